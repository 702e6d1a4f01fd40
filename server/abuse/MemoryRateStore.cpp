// Outbound rate counters in memory: sharded map of hour/day sliding windows.
#include "abuse/MemoryRateStore.h"

#include <algorithm>
#include <cstdint>
#include <functional>

namespace postern::abuse {

std::size_t MemoryRateStore::shardIndex(const std::string& key) const {
    return std::hash<std::string>{}(key) % ShardCount;
}

std::size_t MemoryRateStore::sweepShard(Shard& shard, core::TimePoint now) {
    std::size_t removed = 0;
    for (auto it = shard.counters.begin(); it != shard.counters.end();) {
        if (it->second.day.isEmpty(now)) {
            it = shard.counters.erase(it);
            ++removed;
        } else {
            ++it;
        }
    }
    return removed;
}

RateStoreResult MemoryRateStore::tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) {
    // Lock every shard involved, in ascending index order, so that two requests over the
    // same keys can never wait on each other crosswise.
    std::vector<std::size_t> indexes;
    indexes.reserve(requests.size());
    for (const auto& r : requests)
        indexes.push_back(shardIndex(r.key));
    std::vector<std::size_t> order = indexes;
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(order.size());
    for (std::size_t i : order) {
        Shard& shard = shards_[i];
        locks.emplace_back(shard.mutex);
        if (++shard.calls % 256 == 0)
            sweepShard(shard, now);
    }

    // Check all first. The same key may appear twice (two counters checked together):
    // amounts for one key add up before comparing.
    RateStoreResult result;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const RateRequest& r = requests[i];
        std::uint64_t amount = 0;
        for (std::size_t j = 0; j <= i; ++j)
            if (requests[j].key == r.key)
                amount += requests[j].amount;
        Counter& c = shards_[indexes[i]].counters[r.key];
        if (r.perHour > 0 && c.hour.total(now) + amount > r.perHour) {
            result.kind = RateStoreResult::Kind::Limited;
            result.index = i;
            result.window = RateWindow::Hour;
            return result;
        }
        if (r.perDay > 0 && c.day.total(now) + amount > r.perDay) {
            result.kind = RateStoreResult::Kind::Limited;
            result.index = i;
            result.window = RateWindow::Day;
            return result;
        }
    }
    for (std::size_t i = 0; i < requests.size(); ++i) {
        Counter& c = shards_[indexes[i]].counters[requests[i].key];
        c.hour.add(now, requests[i].amount);
        c.day.add(now, requests[i].amount);
    }
    result.kind = RateStoreResult::Kind::Added;
    return result;
}

std::optional<RateCounts> MemoryRateStore::get(const std::string& key, core::TimePoint now) {
    Shard& shard = shards_[shardIndex(key)];
    std::lock_guard lock(shard.mutex);
    auto it = shard.counters.find(key);
    if (it == shard.counters.end())
        return RateCounts{};
    return RateCounts{it->second.hour.total(now), it->second.day.total(now)};
}

void MemoryRateStore::raise(const std::string& key, RateCounts atLeast, core::TimePoint now) {
    Shard& shard = shards_[shardIndex(key)];
    std::lock_guard lock(shard.mutex);
    Counter& c = shard.counters[key];
    auto lift = [now](SlidingWindow& w, std::uint64_t target) {
        const std::uint64_t have = w.total(now);
        if (target > have)
            w.add(now, static_cast<std::uint32_t>(std::min<std::uint64_t>(target - have, UINT32_MAX)));
    };
    lift(c.hour, atLeast.lastHour);
    lift(c.day, atLeast.lastDay);
}

std::size_t MemoryRateStore::sweep(core::TimePoint now) {
    std::size_t removed = 0;
    for (Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        removed += sweepShard(shard, now);
    }
    return removed;
}

std::size_t MemoryRateStore::size() const {
    std::size_t n = 0;
    for (const Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        n += shard.counters.size();
    }
    return n;
}

}  // namespace postern::abuse
