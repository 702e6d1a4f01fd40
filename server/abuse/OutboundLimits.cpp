#include "abuse/OutboundLimits.h"

#include <charconv>

namespace postern::abuse {

std::optional<RateLimits> limitsFromAttributes(const core::AuthIdentity& identity, const RateLimits& defaults) {
    RateLimits l = defaults;
    bool any = false;
    auto read = [&](std::string_view name, std::uint32_t& field) {
        auto it = identity.attributes.find(std::string(name));
        if (it == identity.attributes.end()) return;
        std::uint32_t v = 0;
        const std::string& s = it->second;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec == std::errc() && p == s.data() + s.size()) {
            field = v;
            any = true;
        }
    };
    static_assert(core::LimitAttributes.size() == 4);
    read(core::LimitAttributes[0], l.messagesPerHour);
    read(core::LimitAttributes[1], l.recipientsPerHour);
    read(core::LimitAttributes[2], l.messagesPerDay);
    read(core::LimitAttributes[3], l.recipientsPerDay);
    if (!any) return std::nullopt;
    return l;
}

core::LimitAnswer OutboundLimits::map(const RateVerdict& v, std::string& what) {
    switch (v.kind) {
    case RateVerdict::Kind::Allow: return core::LimitAnswer::Allow;
    case RateVerdict::Kind::Limited:
        what = v.limitedBy + "." + v.limit;
        return core::LimitAnswer::Limited;
    case RateVerdict::Kind::TempFail: break;
    }
    what = "store_unavailable";
    return core::LimitAnswer::TempFail;
}

core::LimitAnswer OutboundLimits::addMessage(const core::ClientAddress& client, const core::AuthIdentity* identity,
                                             std::string& what) {
    std::string_view user = identity ? std::string_view(identity->user) : std::string_view();
    auto overrides = identity ? limitsFromAttributes(*identity, limiter_.settings().user) : std::nullopt;
    return map(limiter_.tryAddMessage(client, user, overrides), what);
}

core::LimitAnswer OutboundLimits::addRecipients(const core::ClientAddress& client, const core::AuthIdentity* identity,
                                                std::uint32_t count, std::string& what) {
    std::string_view user = identity ? std::string_view(identity->user) : std::string_view();
    auto overrides = identity ? limitsFromAttributes(*identity, limiter_.settings().user) : std::nullopt;
    return map(limiter_.tryAddRecipients(client, user, count, overrides), what);
}

}  // namespace postern::abuse
