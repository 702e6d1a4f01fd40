// core::OutboundLimiter over RateLimiter: per user and per client IP message and
// recipient limits, with per-user overrides from the auth backend's attributes.
#pragma once

#include "abuse/RateLimiter.h"
#include "core/OutboundLimiter.h"

#include <optional>

namespace postern::abuse {

// Per-user overrides: attributes "messages_per_hour", "recipients_per_hour",
// "messages_per_day", "recipients_per_day" (a passwd-file extra field, a PostgreSQL
// column or an LDAP attribute mapped to that name); a missing one keeps the default.
std::optional<RateLimits> limitsFromAttributes(const core::AuthIdentity& identity, const RateLimits& defaults);

// Thread-safe (RateLimiter is). Logs one line per limit hit.
class OutboundLimits final : public core::OutboundLimiter {
public:
    explicit OutboundLimits(RateLimiter& limiter) : limiter_(limiter) {}
    core::LimitAnswer addMessage(const core::ClientAddress& client, const core::AuthIdentity* identity,
                                 std::string& what) override;
    core::LimitAnswer addRecipients(const core::ClientAddress& client, const core::AuthIdentity* identity,
                                    std::uint32_t count, std::string& what) override;

private:
    core::LimitAnswer map(const RateVerdict& v, std::string& what);
    RateLimiter& limiter_;
};

}  // namespace postern::abuse
