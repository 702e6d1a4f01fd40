// Port: failed-authentication counters shared by AuthPenalty. Memory on one node
// (MemoryPenaltyStore); a PostgreSQL implementation shares them across a cluster.
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace postern::abuse {

// One counter: failures since the counter was last empty, and when it empties again.
struct PenaltyCount {
    std::uint32_t failures = 0;
    core::TimePoint expires{};  // meaningless when failures == 0
};

// A counter counts the failures within `window` of its first one, then starts again: a
// source failing now and then (a stale device polling with an old password) does not add
// up for ever. From `holdAt` failures on (the block threshold) every failure pushes the
// expiry to `window` after it, so a client that keeps failing, once blocked, stays blocked
// until it has been quiet for a whole window.
//
// Thread-safe. Every call can fail (a shared store may be unreachable): nullopt / false
// mean "try later", never "no failures" - the caller answers with a temporary error.
class PenaltyStore {
public:
    virtual ~PenaltyStore() = default;
    // Adds one failure to `key` at `now`: an expired counter starts again at 1 with expiry
    // now + window; a live one counts on and keeps its expiry, unless the new count is at
    // least `holdAt` (0: never), which moves it to now + window. Returns the new count, or
    // nullopt if the store failed.
    virtual std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now,
                                                  std::chrono::milliseconds window, std::uint32_t holdAt) = 0;
    // The same with no block threshold.
    std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now, std::chrono::milliseconds window) {
        return increment(key, now, window, 0);
    }
    // The counter at `now` ({0, {}} if absent or expired), or nullopt if the store failed.
    virtual std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) = 0;
    // Forgets `key`. false if the store failed.
    virtual bool reset(const std::string& key) = 0;
    // Both counters of one login (client address, account) at once: one round trip for a
    // shared store. `second` may be "" (not asked: {0, {}}). nullopt if the store failed.
    // Default: two get() calls.
    virtual std::optional<std::pair<PenaltyCount, PenaltyCount>> getPair(const std::string& first,
                                                                         const std::string& second,
                                                                         core::TimePoint now) {
        auto a = get(first, now);
        if (!a)
            return std::nullopt;
        PenaltyCount b;
        if (!second.empty()) {
            auto got = get(second, now);
            if (!got)
                return std::nullopt;
            b = *got;
        }
        return std::make_pair(*a, b);
    }
    // Whether this node holds counts of `first` or `second` that a shared store's own
    // statements do not see (failures counted locally during an outage). Default: none.
    virtual bool holdsLocalCounts(const std::string& /*first*/, const std::string& /*second*/, core::TimePoint /*now*/) {
        return false;
    }
};
using PenaltyStorePtr = std::unique_ptr<PenaltyStore>;

}  // namespace postern::abuse
