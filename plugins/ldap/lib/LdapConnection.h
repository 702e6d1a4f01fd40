// One connection to one LDAP server (RAII over libldap's LDAP*): connect with TLS options,
// optional StartTLS (RFC 4513 3), simple bind (RFC 4513 5.1.3) and search, each bounded by
// a timeout.
#pragma once

#include "LdapConfig.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

struct ldap;  // libldap's LDAP; kept out of this header so callers need not include <ldap.h>

namespace postern::plugins::ldap {

// One entry of a search result. Attribute names are lower-cased.
struct LdapEntry {
    std::string dn;
    std::map<std::string, std::vector<std::string>> attributes;

    const std::vector<std::string>* values(const std::string& attribute) const;
};

// The outcome of one libldap call: the LDAP result code (negative: client-side codes such
// as LDAP_SERVER_DOWN, LDAP_TIMEOUT) and text for the log.
struct LdapResult {
    int code = 0;
    std::string text;

    bool ok() const { return code == 0; }
    // The server is down, unreachable, timed out, busy or unavailable: the request may be
    // retried on another server and this one is marked down.
    bool isServerFailure() const;
    bool isInvalidCredentials() const;
    std::string describe() const;  // "code=-1 (Can't contact LDAP server) text"
};

// Not thread-safe: one thread uses a connection at a time (the pool hands it out).
class LdapConnection {
public:
    // Who the connection is currently bound as. After a user bind the next search must
    // bind as the service again (or anonymously).
    enum class Identity { Anonymous, Service, User };

    // Connects now (TCP, TLS for ldaps://, StartTLS if configured). Returns nullptr and
    // fills `result` on failure.
    static std::unique_ptr<LdapConnection> open(const std::string& uri, const LdapConfig& config,
                                                LdapResult& result);
    ~LdapConnection();
    LdapConnection(const LdapConnection&) = delete;
    LdapConnection& operator=(const LdapConnection&) = delete;

    // Simple bind; timeout: bind_timeout. An empty dn and password is an anonymous bind
    // (used only to drop a user's identity, never to authenticate anyone).
    LdapResult bind(const std::string& dn, const std::string& password, Identity as);

    // scope: 0 base, 2 subtree. sizeLimit 0 = no limit; LDAP_SIZELIMIT_EXCEEDED (4) is returned
    // with the entries received. timeout: search_timeout.
    LdapResult search(const std::string& base, int scope, const std::string& filter,
                      const std::vector<std::string>& attributes, int sizeLimit, std::vector<LdapEntry>& entries);

    Identity identity() const { return identity_; }
    const std::string& uri() const { return uri_; }

private:
    LdapConnection(struct ldap* handle, std::string uri, const LdapConfig& config);

    struct ldap* ld_;
    std::string uri_;
    const LdapConfig& config_;
    Identity identity_ = Identity::Anonymous;
};

using LdapConnectionPtr = std::unique_ptr<LdapConnection>;

}  // namespace postern::plugins::ldap
