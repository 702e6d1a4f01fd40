// Port: outbound sending limits for authenticated users and relaying client IPs
// (compromised accounts must not become spam cannons).
#pragma once

#include "core/AuthService.h"
#include "core/ClientAddress.h"

#include <cstdint>
#include <string>

namespace postern::core {

enum class LimitAnswer {
    Allow,
    Limited,   // over a limit: MAIL 450 4.7.1 / RCPT 452 4.7.1
    TempFail,  // shared counter store unreachable: 451 4.3.0
};

// Thread-safe. `identity`: the authenticated user, or for a POP-before-SMTP grant relay
// the grant's user (its name only: the limits.user.* values apply, not the user's own
// attributes); null: only the client IP's limits apply. `what` receives which limit was
// hit, for the log.
class OutboundLimiter {
public:
    virtual ~OutboundLimiter() = default;
    virtual LimitAnswer addMessage(const ClientAddress& client, const AuthIdentity* identity, std::string& what) = 0;
    virtual LimitAnswer addRecipients(const ClientAddress& client, const AuthIdentity* identity, std::uint32_t count,
                                      std::string& what) = 0;
};

}  // namespace postern::core
