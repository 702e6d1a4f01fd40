// Shared counter stores that keep working when the shared PostgreSQL does not: while it
// cannot answer, this node counts in memory (logged once per outage), so an outage of the
// cluster database neither stops every login and submission nor switches the abuse
// controls off. Counts made during the outage stay local to the node.
#pragma once

#include "abuse/MemoryPenaltyStore.h"
#include "abuse/MemoryRateStore.h"
#include "abuse/PenaltyStore.h"
#include "abuse/RateStore.h"

#include <atomic>
#include <string>

namespace postern::abuse {

// Thread-safe if the primary is (both given stores are).
class DegradingPenaltyStore final : public PenaltyStore {
public:
    explicit DegradingPenaltyStore(PenaltyStore& primary) : primary_(primary) {}
    std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now, std::chrono::milliseconds window) override;
    std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) override;
    bool reset(const std::string& key) override;
    bool holdsLocalCounts(const std::string& first, const std::string& second, core::TimePoint now) override;
    std::optional<std::pair<PenaltyCount, PenaltyCount>> getPair(const std::string& first, const std::string& second,
                                                                 core::TimePoint now) override;

private:
    void noteDown();
    void noteUp();

    PenaltyStore& primary_;
    MemoryPenaltyStore local_;
    std::atomic<bool> degraded_{false};
};

class DegradingRateStore final : public RateStore {
public:
    explicit DegradingRateStore(RateStore& primary) : primary_(primary) {}
    RateStoreResult tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) override;
    std::optional<RateCounts> get(const std::string& key, core::TimePoint now) override;

private:
    RateStore& primary_;
    MemoryRateStore local_;
    std::atomic<bool> degraded_{false};
};

}  // namespace postern::abuse
