// One connection to one LDAP server over libldap: connect, StartTLS, bind, search.
#include "LdapConnection.h"
#include "core/Utf8.h"

#include <ldap.h>

#include <algorithm>
#include <cctype>

namespace postern::plugins::ldap {

namespace {

timeval toTimeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

LdapResult resultOf(LDAP* ld, int code, const std::string& what) {
    LdapResult r;
    r.code = code;
    r.text = what;
    char* diag = nullptr;
    if (ld != nullptr && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag) == LDAP_OPT_SUCCESS &&
        diag != nullptr) {
        if (*diag != '\0') {
            r.text += std::string(": ") + diag;
        }
        ldap_memfree(diag);
    }
    return r;
}

}  // namespace

const std::vector<std::string>* LdapEntry::values(const std::string& attribute) const {
    auto it = attributes.find(core::asciiLower(attribute));
    return it == attributes.end() ? nullptr : &it->second;
}

bool LdapResult::isServerFailure() const {
    switch (code) {
        case LDAP_SERVER_DOWN:
        case LDAP_CONNECT_ERROR:
        case LDAP_TIMEOUT:
        // Not LDAP_TIMELIMIT_EXCEEDED (nor adminLimitExceeded): that is the answer of a live
        // server to one slow search; the pool tries the next server without marking this one
        // down (counting it marked the directory down for every login: review finding).
        case LDAP_BUSY:
        case LDAP_UNAVAILABLE:
            return true;
        default:
            return false;
    }
}

bool LdapResult::isInvalidCredentials() const {
    return code == LDAP_INVALID_CREDENTIALS;
}

std::string LdapResult::describe() const {
    std::string s = "code=" + std::to_string(code) + " (" + ldap_err2string(code) + ")";
    if (!text.empty()) {
        s += " " + text;
    }
    return s;
}

LdapConnection::LdapConnection(LDAP* handle, std::string uri, const LdapConfig& config)
    : ld_(handle), uri_(std::move(uri)), config_(config) {}

LdapConnection::~LdapConnection() {
    if (ld_ != nullptr) {
        ldap_unbind_ext_s(ld_, nullptr, nullptr);
    }
}

std::unique_ptr<LdapConnection> LdapConnection::open(const std::string& uri, const LdapConfig& config,
                                                     LdapResult& result) {
    LDAP* ld = nullptr;
    int rc = ldap_initialize(&ld, uri.c_str());
    if (rc != LDAP_SUCCESS || ld == nullptr) {
        result = {rc, "ldap_initialize " + uri};
        return nullptr;
    }
    std::unique_ptr<LdapConnection> conn(new LdapConnection(ld, uri, config));

    const int version = LDAP_VERSION3;
    timeval network = toTimeval(config.networkTimeout);
    timeval sync = toTimeval(std::max(config.bindTimeout, config.searchTimeout));
    int requireCert = config.tlsRequireCert == TlsRequireCert::Demand  ? LDAP_OPT_X_TLS_DEMAND
                      : config.tlsRequireCert == TlsRequireCert::Allow ? LDAP_OPT_X_TLS_ALLOW
                                                                       : LDAP_OPT_X_TLS_NEVER;
    // TCP keepalive finds a peer that vanished (host down, network cut) on an idle pooled
    // connection; libldap turns SO_KEEPALIVE on and applies these when it makes the socket.
    const int keepIdle = static_cast<int>(config.keepaliveIdle.count() / 1000);
    const int keepInterval = static_cast<int>(config.keepaliveInterval.count() / 1000);
    const int keepProbes = config.keepaliveProbes;
    int newCtx = 0;
    bool ok = ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version) == LDAP_OPT_SUCCESS &&
              // Referrals would send the user's password to whatever server a referral names.
              ldap_set_option(ld, LDAP_OPT_REFERRALS, config.referrals ? LDAP_OPT_ON : LDAP_OPT_OFF) ==
                  LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &network) == LDAP_OPT_SUCCESS &&
              // Synchronous calls (StartTLS, and any *_s call) give up after this.
              ldap_set_option(ld, LDAP_OPT_TIMEOUT, &sync) == LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_IDLE, &keepIdle) == LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_INTERVAL, &keepInterval) == LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_X_KEEPALIVE_PROBES, &keepProbes) == LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON) == LDAP_OPT_SUCCESS &&
              ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &requireCert) == LDAP_OPT_SUCCESS &&
              (config.caFile.empty() ||
               ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, config.caFile.c_str()) == LDAP_OPT_SUCCESS);
    // The TLS options above apply to this handle only once it has its own context.
    if (ok && ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &newCtx) != LDAP_OPT_SUCCESS) {
        result = resultOf(ld, LDAP_LOCAL_ERROR, "cannot create the TLS context (ca_file?)");
        return nullptr;
    }
    if (!ok) {
        result = resultOf(ld, LDAP_LOCAL_ERROR, "cannot set connection options");
        return nullptr;
    }
    // Connect now (TCP and, for ldaps://, the TLS handshake with certificate checks) so a
    // dead server is found here and not in the middle of a user's bind.
    rc = ldap_connect(ld);
    if (rc != LDAP_SUCCESS) {
        result = resultOf(ld, rc, "connect " + uri);
        return nullptr;
    }
    if (config.startTls) {
        // RFC 4513 3: StartTLS before any bind, so no password travels in clear text.
        rc = ldap_start_tls_s(ld, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) {
            // A failed StartTLS is a server failure for fail-over purposes, whatever code it
            // came with: this server cannot be used safely.
            result = resultOf(ld, rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR ? rc : LDAP_CONNECT_ERROR,
                              "StartTLS " + uri + " failed (" + ldap_err2string(rc) + ")");
            return nullptr;
        }
    }
    result = {};
    return conn;
}

LdapResult LdapConnection::bind(const std::string& dn, const std::string& password, Identity as) {
    berval cred{};
    cred.bv_val = const_cast<char*>(password.data());
    cred.bv_len = password.size();
    int msgid = -1;
    identity_ = Identity::User;  // until a bind succeeds we do not know who we are
    int rc = ldap_sasl_bind(ld_, dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, &msgid);
    if (rc != LDAP_SUCCESS) {
        return resultOf(ld_, rc, "bind");
    }
    timeval tv = toTimeval(config_.bindTimeout);
    LDAPMessage* res = nullptr;
    rc = ldap_result(ld_, msgid, LDAP_MSG_ALL, &tv, &res);
    if (rc == 0) {
        ldap_abandon_ext(ld_, msgid, nullptr, nullptr);
        return {LDAP_TIMEOUT, "bind timed out"};
    }
    if (rc < 0) {
        int code = LDAP_SERVER_DOWN;
        ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &code);
        return resultOf(ld_, code, "bind");
    }
    int code = LDAP_OTHER;
    char* message = nullptr;
    rc = ldap_parse_result(ld_, res, &code, nullptr, &message, nullptr, nullptr, 1);
    LdapResult r{rc != LDAP_SUCCESS ? rc : code, "bind"};
    if (message != nullptr) {
        if (*message != '\0') {
            r.text += std::string(": ") + message;
        }
        ldap_memfree(message);
    }
    if (r.ok()) {
        identity_ = as;
    }
    return r;
}

LdapResult LdapConnection::search(const std::string& base, int scope, const std::string& filter,
                                  const std::vector<std::string>& attributes, int sizeLimit,
                                  std::vector<LdapEntry>& entries) {
    entries.clear();
    std::vector<char*> attrs;
    for (const auto& a : attributes) {
        attrs.push_back(const_cast<char*>(a.c_str()));
    }
    if (attrs.empty()) {
        attrs.push_back(const_cast<char*>(LDAP_NO_ATTRS));
    }
    attrs.push_back(nullptr);
    timeval tv = toTimeval(config_.searchTimeout);
    LDAPMessage* res = nullptr;
    const int rc = ldap_search_ext_s(ld_, base.c_str(), scope, filter.c_str(), attrs.data(), 0, nullptr, nullptr,
                                     &tv, sizeLimit, &res);
    if (res != nullptr) {
        for (LDAPMessage* e = ldap_first_entry(ld_, res); e != nullptr; e = ldap_next_entry(ld_, e)) {
            LdapEntry entry;
            if (char* dn = ldap_get_dn(ld_, e); dn != nullptr) {
                entry.dn = dn;
                ldap_memfree(dn);
            }
            BerElement* ber = nullptr;
            for (char* a = ldap_first_attribute(ld_, e, &ber); a != nullptr; a = ldap_next_attribute(ld_, e, ber)) {
                auto& values = entry.attributes[core::asciiLower(a)];
                if (berval** vals = ldap_get_values_len(ld_, e, a); vals != nullptr) {
                    for (int i = 0; vals[i] != nullptr; ++i) {
                        values.emplace_back(vals[i]->bv_val, vals[i]->bv_len);
                    }
                    ldap_value_free_len(vals);
                }
                ldap_memfree(a);
            }
            if (ber != nullptr) {
                ber_free(ber, 0);
            }
            entries.push_back(std::move(entry));
        }
        ldap_msgfree(res);
    }
    if (rc != LDAP_SUCCESS) {
        return resultOf(ld_, rc, "search");
    }
    return {};
}

}  // namespace postern::plugins::ldap
