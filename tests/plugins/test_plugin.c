/* A Postern auth plugin written in C against api/postern_plugin.h only: proves the header is
 * C, and, built in variants (tests/CMakeLists.txt), lets unit_auth check that the loader
 * refuses another ABI version and a too small function table.
 *   TEST_DATA_ABI   value of the exported postern_plugin_abi_version
 *   TEST_TABLE_ABI  abi_version inside the table
 *   TEST_TABLE_SIZE table_size inside the table
 * Behaviour: one user c@example.test with {PLAIN}c-pw (the host verifies), domain
 * example.test; lookup of odd@example.test answers status 99 (the host must fail closed);
 * set_password is UNSUPPORTED with a message; replace_password answers CHANGED; the other
 * writes are NULL. */
#include "api/postern_plugin.h"

#include <stdlib.h>
#include <string.h>

#ifndef TEST_DATA_ABI
#define TEST_DATA_ABI POSTERN_PLUGIN_ABI_VERSION
#endif
#ifndef TEST_TABLE_ABI
#define TEST_TABLE_ABI POSTERN_PLUGIN_ABI_VERSION
#endif
#ifndef TEST_TABLE_SIZE
#define TEST_TABLE_SIZE sizeof(postern_plugin_table)
#endif

struct postern_backend {
    int created;
};

static postern_str lit(const char* s) {
    postern_str v;
    v.data = s;
    v.len = strlen(s);
    return v;
}

static int eq(postern_str a, const char* b) {
    return a.len == strlen(b) && (a.len == 0 || memcmp(a.data, b, a.len) == 0);
}

static postern_backend* create(const postern_kv* config, size_t count, uint32_t flags, char* error,
                               size_t error_size) {
    (void)config;
    (void)flags;
    if (count != 0) {
        const char* msg = "ctest: takes no config keys";
        size_t n = strlen(msg) < error_size - 1 ? strlen(msg) : error_size - 1;
        memcpy(error, msg, n);
        error[n] = '\0';
        return NULL;
    }
    postern_backend* b = (postern_backend*)malloc(sizeof *b);
    if (b != NULL) {
        b->created = 1;
    }
    return b;
}

static void destroy(postern_backend* b) { free(b); }

static postern_status authenticate(postern_backend* b, postern_str user, postern_str password,
                                   postern_str service, postern_str client_ip, const postern_sink* sink) {
    postern_auth_answer a;
    postern_str senders[1];
    (void)b;
    (void)password;
    (void)service;
    (void)client_ip;
    memset(&a, 0, sizeof a);
    a.status = eq(user, "c@example.test") ? POSTERN_OK : POSTERN_UNKNOWN_USER;
    if (a.status == POSTERN_OK) {
        senders[0] = lit("c@example.test");
        a.record.user = lit("c@example.test");
        a.record.password_hash = lit("{PLAIN}c-pw");
        a.record.senders = senders;
        a.record.sender_count = 1;
    }
    if (sink != NULL && sink->auth != NULL) {
        sink->auth(sink->ctx, &a);
    }
    return a.status;
}

static postern_status lookup(postern_backend* b, postern_str address, const postern_sink* sink) {
    postern_lookup_answer a;
    (void)b;
    memset(&a, 0, sizeof a);
    a.status = eq(address, "odd@example.test") ? 99 : POSTERN_NOT_FOUND;
    if (sink != NULL && sink->lookup != NULL) {
        sink->lookup(sink->ctx, &a);
    }
    return a.status;
}

static postern_status has_domain(postern_backend* b, postern_str domain) {
    (void)b;
    return eq(domain, "example.test") ? POSTERN_OK : POSTERN_NOT_FOUND;
}

static postern_status probe(postern_backend* b, const postern_sink* sink) {
    (void)sink;
    return b->created ? POSTERN_OK : POSTERN_TEMPFAIL;
}

static postern_status set_password(postern_backend* b, postern_str user, postern_str hash,
                                   const postern_sink* sink) {
    (void)b;
    (void)user;
    (void)hash;
    if (sink != NULL && sink->message != NULL) {
        sink->message(sink->ctx, lit("ctest is read-only"));
    }
    return POSTERN_UNSUPPORTED;
}

/* The optional compare-and-set: the stored {PLAIN}c-pw is never the hash named here. A
 * variant whose table_size ends before this member (noreplace) must never be asked. */
static postern_status replace_password(postern_backend* b, postern_str user, postern_str old_hash,
                                       postern_str new_hash, const postern_sink* sink) {
    (void)b;
    (void)user;
    (void)old_hash;
    (void)new_hash;
    (void)sink;
    return POSTERN_CHANGED;
}

static const postern_plugin_table table = {
    TEST_TABLE_ABI, (uint32_t)(TEST_TABLE_SIZE), "ctest", "0.1", create, destroy, authenticate, lookup,
    has_domain, probe, set_password, NULL, NULL, NULL, NULL, NULL, NULL,
    /* ABI 4: app passwords (none) */ NULL, NULL, NULL, NULL, NULL,
    /* optional */ replace_password};

__attribute__((visibility("default"))) const uint32_t postern_plugin_abi_version = TEST_DATA_ABI;

__attribute__((visibility("default"))) const postern_plugin_table* postern_plugin_entry(void) { return &table; }
