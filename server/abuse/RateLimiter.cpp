// Outbound rate limits per user and per client address over sliding hour/day windows.
#include "abuse/RateLimiter.h"

#include "abuse/MemoryRateStore.h"

#include <cctype>
#include <stdexcept>
#include <utility>
#include <vector>

namespace postern::abuse {

RateLimiter::RateLimiter(const RateLimiterSettings& settings, RateStorePtr store, core::Clock clock)
    : settings_(settings),
      allow_(core::NetworkList::parse(settings.allowNetworks)),
      store_(std::move(store)),
      clock_(core::clockOrSystem(std::move(clock))) {
    if (settings_.ipv6Prefix > 128)
        throw std::invalid_argument("limits.ipv6_prefix must be 0..128");
    if (!store_)
        store_ = std::make_unique<MemoryRateStore>();
}

std::string RateLimiter::userKey(std::string_view counter, std::string_view user) const {
    std::string key(counter);
    key += ":user:";
    for (char c : user)
        key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return key;
}

std::string RateLimiter::ipKey(std::string_view counter, const core::ClientAddress& client) const {
    std::string key(counter);
    key += ":ip:";
    key += core::addressKey(client.ip, settings_.ipv6Prefix);
    return key;
}

RateVerdict RateLimiter::tryAddMessage(const core::ClientAddress& client, std::string_view user,
                                       const std::optional<RateLimits>& userLimits) {
    return tryAdd(client, user, true, 1, userLimits);
}

RateVerdict RateLimiter::tryAddRecipients(const core::ClientAddress& client, std::string_view user,
                                          std::uint32_t count, const std::optional<RateLimits>& userLimits) {
    return tryAdd(client, user, false, count, userLimits);
}

RateVerdict RateLimiter::tryAdd(const core::ClientAddress& client, std::string_view user, bool messages,
                                std::uint32_t amount, const std::optional<RateLimits>& userLimits) {
    RateVerdict v;
    if (amount == 0) {
        v.kind = RateVerdict::Kind::Allow;
        return v;
    }
    const char* counter = messages ? "msg" : "rcpt";
    auto request = [&](std::string key, const RateLimits& l) {
        return RateRequest{std::move(key), amount, messages ? l.messagesPerHour : l.recipientsPerHour,
                           messages ? l.messagesPerDay : l.recipientsPerDay};
    };
    std::vector<RateRequest> requests;
    std::vector<const char*> scopes;
    // A counter without a limit is not kept: limits.ip.* are off by default, and counting
    // them anyway put every sender behind one CGNAT address on one lock and one row.
    auto add = [&](std::string key, const RateLimits& l, const char* scope) {
        RateRequest r = request(std::move(key), l);
        if (r.perHour == 0 && r.perDay == 0) return;
        requests.push_back(std::move(r));
        scopes.push_back(scope);
    };
    if (!user.empty()) add(userKey(counter, user), userLimits.value_or(settings_.user), "user");
    if (!isExempt(client)) add(ipKey(counter, client), settings_.ip, "ip");
    if (requests.empty()) {
        v.kind = RateVerdict::Kind::Allow;
        return v;
    }

    RateStoreResult r = store_->tryAdd(requests, clock_());
    switch (r.kind) {
    case RateStoreResult::Kind::Added:
        v.kind = RateVerdict::Kind::Allow;
        break;
    case RateStoreResult::Kind::Limited:
        v.kind = RateVerdict::Kind::Limited;
        v.limitedBy = r.index < scopes.size() ? scopes[r.index] : "unknown";
        v.limit = std::string(messages ? "messages" : "recipients") +
                  (r.window == RateWindow::Hour ? "_per_hour" : "_per_day");
        break;
    case RateStoreResult::Kind::TempFail:
        v.kind = RateVerdict::Kind::TempFail;
        break;
    }
    return v;
}

}  // namespace postern::abuse
