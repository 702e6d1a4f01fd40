// Failed-authentication counters in memory (one node).
#pragma once

#include "abuse/PenaltyStore.h"

#include <array>
#include <mutex>
#include <unordered_map>

namespace postern::abuse {

// Thread-safe: 32 shards chosen by a hash of the key, each with its own mutex (no global
// lock). Expired counters are dropped lazily on access, every 256th increment of a shard
// sweeps that shard, and sweep() sweeps all (memory stays bounded by the keys that failed
// within one window). Never fails.
class MemoryPenaltyStore : public PenaltyStore {
public:
    using PenaltyStore::increment;
    std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now,
                                          std::chrono::milliseconds window, std::uint32_t holdAt) override;
    std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) override;
    bool reset(const std::string& key) override;
    // Sets `key`'s counter to `count`; a count without failures or already expired at `now`
    // removes it.
    void set(const std::string& key, const PenaltyCount& count, core::TimePoint now);

    // Removes every counter expired at `now`; returns how many.
    std::size_t sweep(core::TimePoint now);
    // Counters held (expired ones not yet dropped included).
    std::size_t size() const;

private:
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, PenaltyCount> counters;
        std::uint32_t increments = 0;
    };
    static constexpr std::size_t ShardCount = 32;

    Shard& shardFor(const std::string& key);
    static std::size_t sweepShard(Shard& shard, core::TimePoint now);  // shard.mutex held

    std::array<Shard, ShardCount> shards_;
};

}  // namespace postern::abuse
