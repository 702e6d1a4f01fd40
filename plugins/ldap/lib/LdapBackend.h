// LDAP auth backend: verifies passwords by binding (search-then-bind or direct bind,
// RFC 4513 5.1.3), reads addresses / mailbox / disabled flag, answers recipient, alias and
// domain lookups. Works against OpenLDAP and Active Directory (no password hash is read).
#pragma once

#include "LdapConfig.h"
#include "LdapConnection.h"
#include "LdapServerPool.h"
#include "api/PluginApi.h"

#include <memory>
#include <string>
#include <vector>

namespace postern::plugins::ldap {

// One configured instance. Owns its server pool (and so the probe thread). Thread-safe;
// no method throws (anything unexpected answers TempFail). The backend checks passwords
// itself: every AuthAnswer it gives has verified = true.
class LdapBackend final : public api::Backend {
public:
    // Does not contact the servers (a down directory must not stop the mail server from
    // starting; requests answer TempFail until one is up).
    explicit LdapBackend(LdapConfig config);
    ~LdapBackend() override;

    // Ok: the bind as the user's DN succeeded (record: user, sender addresses, mailbox).
    // BadCredentials: empty password (RFC 4513 5.1.2, refused before any bind) or the
    //   server said invalidCredentials (49) to the user's bind.
    // UnknownUser: the user filter matched no entry (search mode).
    // Disabled: the password was right but the entry is disabled.
    // TempFail: no server reachable, timeouts, busy/unavailable, the service bind failed,
    //   the filter matched more than one entry (ambiguous: fail closed), any other error.
    api::AuthAnswer authenticate(const std::string& user, const std::string& password,
                                 const std::string& service, const std::string& clientIp) noexcept override;

    // Ok: a mailbox (one entry matches recipient_filter) and/or alias destinations
    // (alias_filter); Disabled: the mailbox entry is disabled and no alias matched;
    // NotFound; TempFail (errors, or several mailbox entries).
    api::LookupAnswer lookup(const std::string& address) noexcept override;

    // Ok if the domain is in local_domains or domain_filter finds an entry; NotFound;
    // TempFail if the search fails.
    api::Status hasDomain(const std::string& domain) noexcept override;

    // Readiness: through the pool (first healthy server, fail-over, down marks), a bind as
    // bind_dn, or without one a base search of the root DSE. Ok if a server answered;
    // TempFail with the server and error otherwise (also at once while every server is
    // marked down). Bounded by the pool's deadlines: per server tried, at most the wait for
    // a pooled connection (search_timeout) + connect (network_timeout) + bind_timeout.
    api::ProbeAnswer probe() noexcept override;

    const LdapConfig& config() const { return config_; }

private:
    struct Account;  // what one search + bind found

    LdapResult useLookupIdentity(LdapConnection& conn) const;
    LdapResult checkDisabled(LdapConnection& conn, const LdapEntry& entry, bool& disabled) const;
    // `name`: the login or address the entry was found by. It names the account only when
    // the entry has no address of its own and `matched` pins the domain (else bob could
    // log in as bob@other-domain through "uid=%n" and send as that address): `problem`.
    // True if a value of an attribute user_filter compares with %u is the login, if one of
    // the entry's mail attribute values is in `domain` (case-insensitive), or if it has no
    // mail values (then recordOf decides).
    bool hasAddressInDomain(const LdapEntry& entry, const std::string& login, const std::string& domain) const;
    api::UserRecord recordOf(const LdapEntry& entry, const std::string& name, const LdapTemplate& matched,
                             std::string& problem) const;
    bool isDisabledByAttribute(const LdapEntry& entry) const;

    const LdapConfig config_;
    std::vector<std::string> entryAttributes_;  // attributes read from a user's entry
    std::vector<std::string> loginAttributes_;  // compared with %u in user_filter
    std::unique_ptr<LdapServerPool> pool_;
};

}  // namespace postern::plugins::ldap
