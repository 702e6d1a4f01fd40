// Port: outbound sending limits for authenticated users and relaying client IPs
// (compromised accounts must not become spam cannons).
#pragma once

#include "core/AuthService.h"
#include "core/ClientAddress.h"
#include "core/GrantStore.h"

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace postern::core {

// The backend attributes that set a user's own outbound limits (today passwd-file extra
// fields: the PostgreSQL and LDAP plugins return no such attributes); a missing one keeps the
// limits.user.* default.
inline constexpr std::array<std::string_view, 4> LimitAttributes = {"messages_per_hour", "recipients_per_hour",
                                                                     "messages_per_day", "recipients_per_day"};

// The limit attributes among `identity`'s: what a POP-before-SMTP grant carries so that its
// relays count against the user's own limits.
inline std::map<std::string, std::string> limitAttributes(const AuthIdentity& identity) {
    std::map<std::string, std::string> out;
    for (std::string_view name : LimitAttributes)
        if (auto it = identity.attributes.find(std::string(name)); it != identity.attributes.end())
            out.emplace(it->first, it->second);
    return out;
}

// The POP-before-SMTP grant a login of `identity` earns: it relays as that user, with the
// user's sender addresses and own outbound limits (`expires` is set by the store).
inline Grant grantFor(const AuthIdentity& identity) {
    return Grant{identity.user, identity.senderAddresses, {}, limitAttributes(identity)};
}

enum class LimitAnswer {
    Allow,
    Limited,   // over a limit: MAIL 450 4.7.1 / RCPT 452 4.7.1
    TempFail,  // shared counter store unreachable: 451 4.3.0
};

// Thread-safe. `identity`: the authenticated user, or for a POP-before-SMTP grant relay
// the grant's user (its name and the limit attributes the grant carries); null: only the
// client IP's limits apply. `what` receives which limit was
// hit, for the log.
class OutboundLimiter {
public:
    virtual ~OutboundLimiter() = default;
    virtual LimitAnswer addMessage(const ClientAddress& client, const AuthIdentity* identity, std::string& what) = 0;
    virtual LimitAnswer addRecipients(const ClientAddress& client, const AuthIdentity* identity, std::uint32_t count,
                                      std::string& what) = 0;
};

}  // namespace postern::core
