// Shared counter stores that keep working when the shared PostgreSQL does not: while it
// cannot answer, this node counts in memory (logged once per outage), so an outage of the
// cluster database neither stops every login and submission nor switches the abuse
// controls off. Counts made during the outage stay local to the node. The penalty store
// also remembers the shared counts it last read or wrote: one failed statement (a full
// pool, a slow lock, which an attacker may provoke) must not lift a block or hand out a
// fresh budget of guesses; the rate store likewise counts on from the shared counts it last
// saw (an outage must not hand a spammer a fresh hour of outbound limits on every node).
#pragma once

#include "abuse/MemoryPenaltyStore.h"
#include "abuse/MemoryRateStore.h"
#include "abuse/PenaltyStore.h"
#include "abuse/RateStore.h"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace postern::abuse {

// Thread-safe if the primary is (both given stores are).
class DegradingPenaltyStore final : public PenaltyStore {
public:
    explicit DegradingPenaltyStore(PenaltyStore& primary) : primary_(primary) {}
    using PenaltyStore::increment;
    std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now, std::chrono::milliseconds window,
                                          std::uint32_t holdAt) override;
    std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) override;
    bool reset(const std::string& key) override;
    bool holdsLocalCounts(const std::string& first, const std::string& second, core::TimePoint now) override;
    std::optional<std::pair<PenaltyCount, PenaltyCount>> getPair(const std::string& first, const std::string& second,
                                                                 core::TimePoint now) override;

private:
    // While degraded: what this node counted during the outage on top of the shared count
    // it last knew (failures added, the later expiry).
    PenaltyCount degradedCount(const std::string& key, core::TimePoint now);
    void learn(const std::string& key, const PenaltyCount& shared, core::TimePoint now) { known_.set(key, shared, now); }

    PenaltyStore& primary_;
    MemoryPenaltyStore local_;  // counted here while the primary could not answer
    MemoryPenaltyStore known_;  // the shared counts last read or written (a count of 0: none)
    std::atomic<bool> degraded_{false};
};

// While the primary cannot answer, a key's local counts start from the shared counts the
// primary last reported for it (RateStoreResult::counts, schema 009), if they are less than
// an hour old; kept as they were (not aged within that hour: errs toward limiting).
class DegradingRateStore final : public RateStore {
public:
    explicit DegradingRateStore(RateStore& primary) : primary_(primary) {}
    RateStoreResult tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) override;
    std::optional<RateCounts> get(const std::string& key, core::TimePoint now) override;

    // Keys whose shared counts this node remembers (for tests).
    std::size_t knownSize() const;

private:
    struct Known {
        RateCounts counts;
        core::TimePoint at;
    };
    void learn(const std::vector<RateRequest>& requests, const RateStoreResult& r, core::TimePoint now);
    std::optional<RateCounts> known(const std::string& key, core::TimePoint now);

    RateStore& primary_;
    MemoryRateStore local_;
    std::atomic<bool> degraded_{false};
    mutable std::mutex knownMutex_;
    std::unordered_map<std::string, Known> known_;  // the shared counts last reported, per key
    std::uint32_t learned_ = 0;                      // learn() calls (every 1024th prunes)
};

}  // namespace postern::abuse
