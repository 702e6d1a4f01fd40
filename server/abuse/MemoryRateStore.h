// Outbound rate counters in memory (one node).
#pragma once

#include "abuse/RateStore.h"
#include "abuse/SlidingWindow.h"

#include <array>
#include <mutex>
#include <unordered_map>

namespace postern::abuse {

// Thread-safe: 32 shards chosen by a hash of the key, each with its own mutex; a request
// over several keys locks their shards in index order (no deadlock, no global lock).
// Counters that no longer count anything are dropped every 256th call touching a shard and
// by sweep(). Never fails.
class MemoryRateStore : public RateStore {
public:
    RateStoreResult tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) override;
    std::optional<RateCounts> get(const std::string& key, core::TimePoint now) override;

    // Raises `key`'s counts at `now` to at least `atLeast` (the deficit goes into the newest
    // bucket of each window): counting on from counts known elsewhere.
    void raise(const std::string& key, RateCounts atLeast, core::TimePoint now);

    // Drops every counter that is empty at `now`; returns how many.
    std::size_t sweep(core::TimePoint now);
    std::size_t size() const;

private:
    struct Counter {
        SlidingWindow hour{std::chrono::hours(1), 12};
        SlidingWindow day{std::chrono::hours(24), 24};
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, Counter> counters;
        std::uint32_t calls = 0;
    };
    static constexpr std::size_t ShardCount = 32;

    std::size_t shardIndex(const std::string& key) const;
    static std::size_t sweepShard(Shard& shard, core::TimePoint now);  // shard.mutex held

    std::array<Shard, ShardCount> shards_;
};

}  // namespace postern::abuse
