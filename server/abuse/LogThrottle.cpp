#include "abuse/LogThrottle.h"

namespace postern::abuse {

LogThrottle::LogThrottle(std::chrono::seconds interval, std::size_t maxKeys, core::Clock clock)
    : interval_(interval), maxKeys_(maxKeys == 0 ? 1 : maxKeys), clock_(core::clockOrSystem(std::move(clock))) {}

std::optional<std::uint64_t> LogThrottle::admit(const std::string& key) {
    const core::TimePoint now = clock_();
    std::lock_guard lock(mutex_);
    if (++calls_ % 1024 == 0 || entries_.size() >= maxKeys_) sweep(now);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        if (entries_.size() >= maxKeys_) return std::nullopt;  // full of live sources: count nothing, log nothing
        entries_.emplace(key, Entry{now, 0});
        return 0;
    }
    Entry& e = it->second;
    if (now - e.lastLogged >= interval_) {
        std::uint64_t suppressed = e.suppressed;
        e = Entry{now, 0};
        return suppressed;
    }
    ++e.suppressed;
    return std::nullopt;
}

void LogThrottle::sweep(core::TimePoint now) {
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (now - it->second.lastLogged >= interval_)
            it = entries_.erase(it);
        else
            ++it;
    }
}

std::size_t LogThrottle::trackedKeys() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace postern::abuse
