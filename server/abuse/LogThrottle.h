// At most one log line per key (e.g. "refusal reason + client IP") per interval, so a flood
// of refused connections cannot flood the log, while every source is still named at least
// once per interval with the number of events not logged since (suppressed=N).
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace postern::abuse {

// Thread-safe. Holds at most maxKeys entries; entries older than the interval are dropped
// when the table is full (and every 1024th call), so memory stays bounded under a flood of
// distinct sources; a source whose entry was dropped is simply logged again.
class LogThrottle {
public:
    explicit LogThrottle(std::chrono::seconds interval, std::size_t maxKeys = 65536, core::Clock clock = {});

    // Returns the number of events suppressed for `key` since its last logged line when the
    // caller should log now (0 for the first), or nullopt when this event is to be counted
    // and not logged.
    std::optional<std::uint64_t> admit(const std::string& key);

    std::size_t trackedKeys() const;

private:
    struct Entry {
        core::TimePoint lastLogged;
        std::uint64_t suppressed = 0;
    };
    void sweep(core::TimePoint now);  // mutex_ held

    const std::chrono::seconds interval_;
    const std::size_t maxKeys_;
    const core::Clock clock_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    std::uint64_t calls_ = 0;
};

}  // namespace postern::abuse
