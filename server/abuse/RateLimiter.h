// Outbound rate limits against compromised accounts and abusive clients: messages and
// recipients per hour and per day, per authenticated user and per client address.
#pragma once

#include "core/Clock.h"
#include "core/Network.h"
#include "abuse/RateStore.h"
#include "core/ClientAddress.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::abuse {

// One set of limits; 0 = no limit for that counter. Set from limits.user.* / limits.ip.*
// (app/ModuleSettings.cpp); their one default lives in the key table (ConfigSchema.cpp).
struct RateLimits {
    std::uint32_t messagesPerHour = 0;   // set from limits.<user|ip>.messages_per_hour
    std::uint32_t recipientsPerHour = 0; // set from limits.<user|ip>.recipients_per_hour
    std::uint32_t messagesPerDay = 0;    // set from limits.<user|ip>.messages_per_day
    std::uint32_t recipientsPerDay = 0;  // set from limits.<user|ip>.recipients_per_day

    bool operator==(const RateLimits&) const = default;
};

// The config keys in brackets ([limits.user.messages_per_hour], [limits.ip.recipients_per_day], ...).
struct RateLimiterSettings {
    RateLimits user;              // [limits.user.*] per authenticated user
    RateLimits ip;                // [limits.ip.*]   per client address
    std::string allowNetworks;    // [limits.allow_networks] CIDR list exempt from the per-address limits
    unsigned ipv6Prefix = 0;      // set from limits.ipv6_prefix: IPv6 clients keyed by /N

    bool operator==(const RateLimiterSettings&) const = default;
};

struct RateVerdict {
    enum class Kind {
        Allow,     // counted; go on
        Limited,   // over a limit, nothing counted: SMTP 451 4.7.1 (temporary: the window moves)
        TempFail,  // the store could not answer: SMTP 451 4.3.0
    };
    Kind kind = Kind::TempFail;  // fail closed
    // Limited: "user" or "ip", and which limit: "messages_per_hour", "recipients_per_day", ...
    std::string limitedBy;
    std::string limit;

    bool isAllowed() const { return kind == Kind::Allow; }
};

// Counts and limits in one step (check-and-commit, all or nothing): a call either counts
// the message (recipients) against the user's and the address's counters, or counts
// nothing and says which limit was hit. Windows slide (see RateStore: never more than a
// limit in any hour/day; an event counts for 60-65 min / 24-25 h).
//
// `user` is the authenticated login ("" = not authenticated: only the address's limits
// apply); users are compared lower-cased. `userLimits` replaces settings.user for this
// call (per-user limits from the auth backend). Clients in allowNetworks skip the
// per-address limits but never the per-user ones (a compromised account is limited
// wherever it sends from). A request larger than a limit is always Limited.
//
// Suggested use: tryAddRecipients(1) per accepted RCPT (refuse that RCPT when limited),
// tryAddMessage() once the message is accepted for delivery, before the 250.
// Thread-safe (the store is); owns the store.
class RateLimiter {
public:
    // store: nullptr = a MemoryRateStore; clock: default system_clock::now.
    // Throws std::invalid_argument on ipv6Prefix > 128 or a bad allow_networks entry.
    explicit RateLimiter(const RateLimiterSettings& settings, RateStorePtr store = nullptr, core::Clock clock = {});

    RateVerdict tryAddMessage(const core::ClientAddress& client, std::string_view user,
                              const std::optional<RateLimits>& userLimits = std::nullopt);
    RateVerdict tryAddRecipients(const core::ClientAddress& client, std::string_view user, std::uint32_t count,
                                 const std::optional<RateLimits>& userLimits = std::nullopt);

    bool isExempt(const core::ClientAddress& client) const { return allow_.contains(client.ip); }
    // Store keys: "msg:user:bob@example.test", "rcpt:ip:192.0.2.7", "msg:ip:2001:db8::/64".
    std::string userKey(std::string_view counter, std::string_view user) const;
    std::string ipKey(std::string_view counter, const core::ClientAddress& client) const;

    const RateLimiterSettings& settings() const { return settings_; }
    RateStore& store() { return *store_; }

private:
    RateVerdict tryAdd(const core::ClientAddress& client, std::string_view user, bool messages,
                       std::uint32_t amount, const std::optional<RateLimits>& userLimits);

    RateLimiterSettings settings_;
    core::NetworkList allow_;
    RateStorePtr store_;
    core::Clock clock_;
};

}  // namespace postern::abuse
