#include "abuse/LogThrottle.h"

#include <iterator>

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
    // Expired entries with nothing suppressed go first; one that still owes its count
    // (suppressed=N on its next line) goes only when the table stays full without it, or
    // after ten intervals of silence (review finding: every sweep under a flood reset the
    // counts, and the lines said suppressed=0).
    bool stillFull = false;
    for (int pass = 0; pass < 2; ++pass) {
        for (auto it = entries_.begin(); it != entries_.end();) {
            const auto age = now - it->second.lastLogged;
            const bool drop = age >= interval_ && (it->second.suppressed == 0 || stillFull || age >= 10 * interval_);
            it = drop ? entries_.erase(it) : std::next(it);
        }
        // Down to 7/8: a table kept just below full would be swept on every call.
        stillFull = entries_.size() >= maxKeys_ - maxKeys_ / 8;
        if (!stillFull) break;
    }
}

std::size_t LogThrottle::trackedKeys() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace postern::abuse
