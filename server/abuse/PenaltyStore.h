// Port: failed-authentication counters shared by AuthPenalty. Memory on one node
// (MemoryPenaltyStore); a PostgreSQL implementation shares them across a cluster.
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace postern::abuse {

// One counter: failures since the counter was last empty, and when it empties again.
struct PenaltyCount {
    std::uint32_t failures = 0;
    core::TimePoint expires{};  // meaningless when failures == 0
};

// A counter is forgotten `window` after its most recent increment (every failure pushes
// the expiry out), so a client that keeps failing stays counted and, once blocked, stays
// blocked until it has been quiet for a whole window.
//
// Thread-safe. Every call can fail (a shared store may be unreachable): nullopt / false
// mean "try later", never "no failures" - the caller answers with a temporary error.
class PenaltyStore {
public:
    virtual ~PenaltyStore() = default;
    // Adds one failure to `key` at `now` (starting from 0 if the counter expired) and sets
    // its expiry to now + window. Returns the new count, or nullopt if the store failed.
    virtual std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now,
                                                  std::chrono::milliseconds window) = 0;
    // The counter at `now` ({0, {}} if absent or expired), or nullopt if the store failed.
    virtual std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) = 0;
    // Forgets `key`. false if the store failed.
    virtual bool reset(const std::string& key) = 0;
};
using PenaltyStorePtr = std::unique_ptr<PenaltyStore>;

}  // namespace postern::abuse
