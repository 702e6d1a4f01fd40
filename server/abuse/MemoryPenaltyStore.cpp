// Failed-authentication counters in memory: sharded map, expiry `window` after the first failure
// (after the last one from the block threshold on; PenaltyStore.h).
#include "abuse/MemoryPenaltyStore.h"

#include <algorithm>
#include <functional>
#include <limits>

namespace postern::abuse {

MemoryPenaltyStore::Shard& MemoryPenaltyStore::shardFor(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % ShardCount];
}

std::size_t MemoryPenaltyStore::sweepShard(Shard& shard, core::TimePoint now) {
    return std::erase_if(shard.counters, [now](const auto& kv) { return kv.second.expires <= now; });
}

std::optional<PenaltyCount> MemoryPenaltyStore::increment(const std::string& key, core::TimePoint now,
                                                          std::chrono::milliseconds window, std::uint32_t holdAt) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    if (++shard.increments % 256 == 0)
        sweepShard(shard, now);
    PenaltyCount& c = shard.counters[key];
    if (c.failures == 0 || c.expires <= now) {
        c.failures = 0;
        c.expires = now + window;
    }
    if (c.failures < std::numeric_limits<std::uint32_t>::max())
        ++c.failures;
    if (holdAt > 0 && c.failures >= holdAt)
        c.expires = now + window;
    return c;
}

std::optional<PenaltyCount> MemoryPenaltyStore::get(const std::string& key, core::TimePoint now) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.counters.find(key);
    if (it == shard.counters.end())
        return PenaltyCount{};
    if (it->second.expires <= now) {
        shard.counters.erase(it);
        return PenaltyCount{};
    }
    return it->second;
}

void MemoryPenaltyStore::set(const std::string& key, const PenaltyCount& count, core::TimePoint now) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    if (count.failures == 0 || count.expires <= now) {
        shard.counters.erase(key);
        return;
    }
    if (++shard.increments % 256 == 0)
        sweepShard(shard, now);
    shard.counters[key] = count;
}

bool MemoryPenaltyStore::reset(const std::string& key) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    shard.counters.erase(key);
    return true;
}

std::size_t MemoryPenaltyStore::sweep(core::TimePoint now) {
    std::size_t removed = 0;
    for (Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        removed += sweepShard(shard, now);
    }
    return removed;
}

std::size_t MemoryPenaltyStore::size() const {
    std::size_t n = 0;
    for (const Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        n += shard.counters.size();
    }
    return n;
}

}  // namespace postern::abuse
