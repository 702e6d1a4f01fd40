// Port: outbound rate counters (messages, recipients per hour and per day) used by
// RateLimiter. Memory on one node (MemoryRateStore); PostgreSQL shares them across a cluster.
#pragma once

#include "core/Clock.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace postern::abuse {

// Add `amount` to counter `key` if, afterwards, its count over the last hour is at most
// `perHour` and over the last day at most `perDay` (0 = no limit for that window).
struct RateRequest {
    std::string key;
    std::uint32_t amount = 0;
    std::uint32_t perHour = 0;
    std::uint32_t perDay = 0;
};

enum class RateWindow { Hour, Day };

struct RateCounts {
    std::uint64_t lastHour = 0;
    std::uint64_t lastDay = 0;
};

struct RateStoreResult {
    enum class Kind {
        Added,     // every request fitted; all amounts were added
        Limited,   // request `index` would exceed `window`'s limit; nothing was added
        TempFail,  // the store could not answer; nothing is known to be added
    };
    Kind kind = Kind::TempFail;  // fail closed
    std::size_t index = 0;
    RateWindow window = RateWindow::Hour;
    // Added, where the store says (PostgreSQL, schema 009): each request's key's counts with
    // this add included, in request order; else empty.
    std::vector<RateCounts> counts;
};

// Windows: "the last hour" and "the last day" are sliding windows kept in buckets (12 of
// 5 minutes, 24 of 1 hour; see SlidingWindow): a limit is never exceeded within any hour
// or day, and an event stops counting between 60 and 65 minutes (24 and 25 hours) after
// it happened. Thread-safe.
class RateStore {
public:
    virtual ~RateStore() = default;
    // All or nothing: either every request is added or none (so a user and an address
    // limit checked together never consume one without the other).
    virtual RateStoreResult tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) = 0;
    // The counts of `key` at `now` (zeros if unknown), or nullopt if the store failed.
    virtual std::optional<RateCounts> get(const std::string& key, core::TimePoint now) = 0;
};
using RateStorePtr = std::unique_ptr<RateStore>;

}  // namespace postern::abuse
