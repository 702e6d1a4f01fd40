/* The binary boundary between posternd/posternctl and an authentication backend
 * (postern-auth-<name>.so). Valid C and C++; only plain C types cross it: fixed-width
 * integers, (pointer, length) strings, plain structs, function pointers. No C++ types, no
 * exceptions, no allocation that one side makes and the other frees. A plugin may be built
 * with any compiler and standard library (even in C: tests/plugins/test_plugin.c is one).
 *
 * Loading: the host reads the data symbol postern_plugin_abi_version before running any plugin
 * code and refuses any other value; it then calls postern_plugin_entry() and refuses a table
 * whose abi_version differs or whose table_size is smaller than POSTERN_PLUGIN_TABLE_MIN_SIZE
 * (the members every plugin of this ABI has). Members are only ever appended: a larger table
 * is fine, and an optional member past a plugin's table_size counts as NULL.
 *
 * Results: the plugin reports through a host-provided postern_sink, called during the
 * operation with pointers into the plugin's own memory that are valid only for that call
 * (the host copies what it keeps). So nothing is allocated across the boundary and nothing
 * needs a matching free; a plugin cannot leak a result object and the host cannot free one
 * with the wrong allocator. Sink callbacks never unwind into the plugin (the host catches).
 *
 * Threads: authenticate, lookup, has_domain, probe, set_password and replace_password are called concurrently
 * from many threads; the user administration calls (posternctl) one at a time. */
#ifndef POSTERN_PLUGIN_H
#define POSTERN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 4: app passwords (fields appended to postern_auth_answer, postern_sink, postern_plugin_table);
 *    stored_scheme appended to postern_auth_answer (rehash on login).
 *    Later, optional (the table's size says whether a plugin has it, so ABI 4 plugins built
 *    before still load): replace_password, the rehash's compare-and-set; POSTERN_CHANGED.
 * 3: the C boundary (postern_plugin_table); write entry points. (1, 2: C++ classes.) */
#define POSTERN_PLUGIN_ABI_VERSION 4u

/* The two symbols every plugin exports. */
#define POSTERN_PLUGIN_ABI_SYMBOL "postern_plugin_abi_version"
#define POSTERN_PLUGIN_ENTRY_SYMBOL "postern_plugin_entry"

/* A string: bytes and their length; data need not be NUL-terminated (may be NULL if len 0). */
typedef struct postern_str {
    const char* data;
    size_t len;
} postern_str;

typedef struct postern_kv {
    postern_str key;
    postern_str value;
} postern_kv;

/* Every answer keeps its causes apart. Reads (authenticate, lookup, has_domain, probe) use
 * 0..5 only; the host maps anything else there to TEMPFAIL (fail closed). */
typedef int32_t postern_status;
#define POSTERN_OK 0              /* done / found (and, if verified, password checked) */
#define POSTERN_BAD_CREDENTIALS 1 /* the backend verified the password and it was wrong */
#define POSTERN_UNKNOWN_USER 2    /* no such user */
#define POSTERN_DISABLED 3        /* account exists but may not log in / receive */
#define POSTERN_NOT_FOUND 4       /* lookup/has_domain: not known to this backend */
#define POSTERN_TEMPFAIL 5        /* cannot answer now (store down, timeout, ambiguous data) */
#define POSTERN_UNSUPPORTED 6     /* this backend cannot do that (e.g. LDAP is read-only) */
#define POSTERN_EXISTS 7          /* add_user: the user exists already */
#define POSTERN_UNKNOWN_DOMAIN 8  /* add_user: the store has no such domain */
#define POSTERN_INVALID 9         /* a value the store refuses (constraint, format) */
#define POSTERN_IO_ERROR 10       /* a file could not be read or written */
#define POSTERN_CONFIG_ERROR 11   /* the store is not set up for this (schema missing) */
#define POSTERN_FAILED 12         /* any other error (message says what) */
#define POSTERN_CHANGED 13        /* replace_password: the stored hash is not the one to replace */

/* Opaque: what create() returned; only the same plugin's functions look inside. */
typedef struct postern_backend postern_backend;

/* What a backend knows about one account. */
typedef struct postern_user_record {
    postern_str user;           /* canonical login, e.g. "alice@example.test" */
    postern_str password_hash;  /* "{SCHEME}hash"; empty if verified by the backend */
    const postern_str* senders; /* MAIL FROM addresses the user may use */
    size_t sender_count;
    postern_str mailbox;        /* relative to the mail root; empty = default */
    const postern_kv* extra;    /* backend-specific attributes (quota, limits) */
    size_t extra_count;
} postern_user_record;

typedef struct postern_auth_answer {
    postern_status status;
    int32_t verified; /* non-zero: the backend checked the password itself (LDAP bind) */
    postern_user_record record;
    postern_str detail; /* for the log only, never shown to clients */

    /* ABI 4: app passwords. All zero/empty for a login with the main password that the
     * backend does not refuse. */
    /* Non-empty: the backend refuses this login even if the password matches (wrong scope,
     * expired, client outside the app password's networks, or the main password of an account
     * that requires app passwords). The host still verifies the password (same time), then
     * fails the login as a wrong password and logs this reason. */
    postern_str refusal;
    /* Non-empty: the password presented is this app password (its id); record.password_hash
     * is the app password's hash, not the account's. Also set the user attribute
     * "app_password_scopes" (record.extra) to its scopes, "smtp", "pop3" or "smtp,pop3": a POP3
     * login with an app password gives a POP-before-SMTP grant only with "smtp" in them (none
     * when the attribute is missing). */
    postern_str app_password_id;
    int64_t app_password_expires;   /* unix seconds; 0 = never: a cached success ends then */
    int32_t app_password_ip_bound;  /* non-zero: restricted to networks; a cached success holds
                                       only for the same client IP */
    int64_t app_password_last_used; /* unix seconds of the recorded last use; 0 = never/unknown */
    postern_str app_password_last_ip; /* recorded last client IP; empty = none */
    /* end ABI 4 app passwords */
    /* --- ABI 4: rehash on login (issue 13.2). --- */
    /* The scheme of the stored hash the password is checked against, Dovecot name
     * ("MD5-CRYPT", "SSHA", "PLAIN"; empty = unknown). For verified = 0 the host reads the
     * scheme from record.password_hash itself; a backend that verifies (verified = 1) sets
     * this if it knows, so the host can replace an old scheme through set_password. A login
     * with an app password (app_password_id set) is never rehashed. */
    postern_str stored_scheme;
    /* --- end of the rehash block --- */
} postern_auth_answer;

typedef struct postern_lookup_answer {
    postern_status status;
    int32_t is_mailbox; /* OK: the address is a local mailbox (record.user set) */
    postern_user_record record;
    const postern_str* alias_destinations; /* OK: alias destinations (host resolves again) */
    size_t alias_count;
    postern_str detail;
} postern_lookup_answer;

/* One account as posternctl shows it: never the hash, only its scheme. */
typedef struct postern_user_info {
    postern_str address;
    int32_t enabled;
    postern_str scheme;   /* "SHA512-CRYPT", "CRYPT", "?" */
    postern_str mailbox;  /* as stored; empty = default */
    uint64_t quota_bytes; /* 0 = none */
    const postern_str* senders;
    size_t sender_count;
    const postern_str* aliases; /* aliases delivering to this user (if the store knows) */
    size_t alias_count;
    postern_str created; /* timestamps as text; empty = unknown */
    postern_str updated;
} postern_user_info;

typedef struct postern_new_user {
    postern_str address;       /* checked and lower-cased by the host */
    postern_str password_hash; /* "{SCHEME}hash" */
    int32_t enabled;
    postern_str mailbox;   /* empty = default */
    uint64_t quota_bytes;  /* 0 = none */
    const postern_str* senders; /* extra MAIL FROM addresses */
    size_t sender_count;
} postern_new_user;

/* ABI 4: one app password as posternctl lists it: never the hash. */
typedef struct postern_app_password_info {
    postern_str id;       /* public id: the part before '-' of the password */
    postern_str label;
    postern_str scopes;   /* "smtp", "pop3" or "smtp,pop3" */
    int64_t expires;      /* unix seconds; 0 = never */
    postern_str networks; /* comma-separated CIDRs; empty = any */
    int64_t created;      /* unix seconds; 0 = unknown */
    int64_t last_used;    /* unix seconds; 0 = never / not recorded */
    postern_str last_ip;
    int64_t revoked;      /* unix seconds; 0 = live */
} postern_app_password_info;

typedef struct postern_new_app_password {
    postern_str user;
    postern_str id;
    postern_str label;
    postern_str password_hash; /* "{SCHEME}hash" of the whole password "<id>-<secret>" */
    postern_str scopes;        /* "smtp", "pop3" or "smtp,pop3" */
    int64_t expires;           /* unix seconds; 0 = never */
    postern_str networks;      /* comma-separated CIDRs; empty = any */
    int64_t created;           /* unix seconds */
} postern_new_app_password;

/* Host callbacks; each may be NULL when the host does not want that kind of answer. The
 * plugin calls the one its operation produces (auth: once; lookup: once; user: once per
 * account for list_users, once for show_user) and message with a one-line detail of a
 * non-OK status (for the operator or the log; never a password). */
typedef struct postern_sink {
    void* ctx;
    void (*auth)(void* ctx, const postern_auth_answer* answer);
    void (*lookup)(void* ctx, const postern_lookup_answer* answer);
    void (*user)(void* ctx, const postern_user_info* info);
    void (*message)(void* ctx, postern_str text);
    /* ABI 4: list_app_passwords, once per app password; require_app_password once. */
    void (*app_password)(void* ctx, const postern_app_password_info* info);
    void (*require_app_password)(void* ctx, int32_t on);
} postern_sink;

/* create() flags. ADMIN: the instance serves posternctl's user administration, not the
 * daemon (e.g. passwd-file: a passwd-file that does not exist yet is an empty one). */
#define POSTERN_CREATE_ADMIN 1u

typedef struct postern_plugin_table {
    uint32_t abi_version; /* POSTERN_PLUGIN_ABI_VERSION */
    uint32_t table_size;  /* sizeof(postern_plugin_table) as the plugin was built */
    const char* name;     /* "passwd-file" (NUL-terminated, static) */
    const char* version;  /* the plugin's own version (NUL-terminated, static) */

    /* config: every key under auth.backend.<instance>. with the prefix stripped. Returns NULL
     * on bad config and writes a NUL-terminated one-line reason into error (at most
     * error_size bytes, truncated). Must reject keys it does not know. */
    postern_backend* (*create)(const postern_kv* config, size_t config_count, uint32_t flags,
                               char* error, size_t error_size);
    void (*destroy)(postern_backend* backend);

    /* Returns the stored hash (verified 0) or verifies itself (verified 1); sink->auth once. */
    postern_status (*authenticate)(postern_backend* backend, postern_str user, postern_str password,
                                   postern_str service, postern_str client_ip, const postern_sink* sink);
    /* RCPT validation: mailbox and/or alias; sink->lookup once. */
    postern_status (*lookup)(postern_backend* backend, postern_str address, const postern_sink* sink);
    /* OK = served here, NOT_FOUND, TEMPFAIL. */
    postern_status (*has_domain)(postern_backend* backend, postern_str domain);
    /* Readiness: OK if a real query against the store works now; else TEMPFAIL + message. */
    postern_status (*probe)(postern_backend* backend, const postern_sink* sink);

    /* Writes. UNSUPPORTED (with a message) from a backend that cannot write. */
    /* Replace the stored hash (posternctl user passwd; rehash on login). UNKNOWN_USER. */
    postern_status (*set_password)(postern_backend* backend, postern_str user, postern_str new_hash,
                                   const postern_sink* sink);
    /* Could add_user succeed (checked before asking for a password)? OK, EXISTS, UNKNOWN_DOMAIN. */
    postern_status (*check_new_user)(postern_backend* backend, postern_str address, const postern_sink* sink);
    postern_status (*add_user)(postern_backend* backend, const postern_new_user* user, const postern_sink* sink);
    postern_status (*set_enabled)(postern_backend* backend, postern_str user, int32_t enabled,
                                  const postern_sink* sink);
    postern_status (*remove_user)(postern_backend* backend, postern_str user, const postern_sink* sink);
    /* domain empty = all; sink->user per account, sorted by address. */
    postern_status (*list_users)(postern_backend* backend, postern_str domain, const postern_sink* sink);
    /* sink->user once; UNKNOWN_USER. */
    postern_status (*show_user)(postern_backend* backend, postern_str address, const postern_sink* sink);

    /* ABI 4: app passwords (posternctl, one call at a time; touch: posternd, concurrently).
     * UNSUPPORTED from a backend without a place for them (LDAP). UNKNOWN_USER. */
    postern_status (*add_app_password)(postern_backend* backend, const postern_new_app_password* app,
                                       const postern_sink* sink);
    /* sink->require_app_password once, then sink->app_password per app password (by creation). */
    postern_status (*list_app_passwords)(postern_backend* backend, postern_str user, const postern_sink* sink);
    /* UNKNOWN_USER also when the user has no live app password with that id (message says). */
    postern_status (*revoke_app_password)(postern_backend* backend, postern_str user, postern_str id,
                                          const postern_sink* sink);
    postern_status (*set_require_app_password)(postern_backend* backend, postern_str user, int32_t on,
                                               const postern_sink* sink);
    /* After a successful login with an app password whose recorded last use is older than
     * auth.app_password_last_used_interval or from another IP: record now + client_ip. */
    postern_status (*touch_app_password)(postern_backend* backend, postern_str user, postern_str id,
                                         postern_str client_ip, const postern_sink* sink);
    /* end ABI 4 app passwords */

    /* Optional (past POSTERN_PLUGIN_TABLE_MIN_SIZE): rehash on login's write (posternd,
     * concurrently with the reads). Replaces the
     * stored hash with new_hash only if it is still old_hash (as authenticate reported it in
     * record.password_hash), in one atomic step: a password changed since the login
     * (posternctl user passwd, the ISP's own tools) is never overwritten with a hash of the old
     * one. OK; CHANGED (another hash is stored; nothing written); UNKNOWN_USER; UNSUPPORTED
     * (the host then checks again and calls set_password); NULL = UNSUPPORTED. */
    postern_status (*replace_password)(postern_backend* backend, postern_str user, postern_str old_hash,
                                       postern_str new_hash, const postern_sink* sink);
} postern_plugin_table;

/* The members every ABI 4 plugin has: those before the optional replace_password. */
#define POSTERN_PLUGIN_TABLE_MIN_SIZE offsetof(postern_plugin_table, replace_password)

/* Exported by the plugin (visibility default, C linkage):
 *   const uint32_t postern_plugin_abi_version;              = POSTERN_PLUGIN_ABI_VERSION
 *   const postern_plugin_table* postern_plugin_entry(void);  static storage, never NULL */
typedef const postern_plugin_table* (*postern_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* POSTERN_PLUGIN_H */
