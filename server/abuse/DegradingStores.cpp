#include "abuse/DegradingStores.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace postern::abuse {

namespace {
Poco::Logger& logger() { return Poco::Logger::get("postern.abuse"); }

void transition(std::atomic<bool>& degraded, bool down, const char* what) {
    bool was = degraded.exchange(down);
    if (was == down) return;
    if (down)
        logger().warning(core::EventLine("store.degraded")
                             .add("store", what)
                             .text("detail", "shared PostgreSQL unavailable: counting on this node until it is back")
                             .str());
    else
        logger().notice(core::EventLine("store.recovered").add("store", what).str());
}
}  // namespace

PenaltyCount DegradingPenaltyStore::degradedCount(const std::string& key, core::TimePoint now) {
    PenaltyCount c = *local_.get(key, now);  // the memory store never fails
    const PenaltyCount k = *known_.get(key, now);
    const std::uint64_t sum = std::uint64_t{c.failures} + k.failures;
    c.failures = static_cast<std::uint32_t>(std::min<std::uint64_t>(sum, std::numeric_limits<std::uint32_t>::max()));
    c.expires = std::max(c.expires, k.expires);
    return c;
}

std::optional<PenaltyCount> DegradingPenaltyStore::increment(const std::string& key, core::TimePoint now,
                                                             std::chrono::milliseconds window, std::uint32_t holdAt) {
    if (auto r = primary_.increment(key, now, window, holdAt)) {
        transition(degraded_, false, "penalty");
        learn(key, *r, now);
        return r;
    }
    transition(degraded_, true, "penalty");
    // The shared count this node knew goes into the local counter (failures and expiry),
    // so a block it completes holds a window after this failure, not only until the known
    // count would have expired.
    if (const PenaltyCount k = *known_.get(key, now); k.failures > 0) {
        local_.set(key, degradedCount(key, now), now);
        known_.reset(key);
    }
    return local_.increment(key, now, window, holdAt);
}

std::optional<PenaltyCount> DegradingPenaltyStore::get(const std::string& key, core::TimePoint now) {
    auto r = primary_.get(key, now);
    if (r) {
        transition(degraded_, false, "penalty");
        learn(key, *r, now);
        // Failures counted here during an outage still count after it.
        if (auto l = local_.get(key, now); l && l->failures > r->failures) return l;
        return r;
    }
    transition(degraded_, true, "penalty");
    return degradedCount(key, now);
}

std::optional<std::pair<PenaltyCount, PenaltyCount>> DegradingPenaltyStore::getPair(const std::string& first,
                                                                                    const std::string& second,
                                                                                    core::TimePoint now) {
    auto r = primary_.getPair(first, second, now);
    if (!r) {
        transition(degraded_, true, "penalty");
        return std::make_pair(degradedCount(first, now), second.empty() ? PenaltyCount{} : degradedCount(second, now));
    }
    transition(degraded_, false, "penalty");
    learn(first, r->first, now);
    if (!second.empty()) learn(second, r->second, now);
    // Failures counted here during an outage still count after it.
    if (auto l = local_.get(first, now); l && l->failures > r->first.failures) r->first = *l;
    if (!second.empty())
        if (auto l = local_.get(second, now); l && l->failures > r->second.failures) r->second = *l;
    return r;
}

bool DegradingPenaltyStore::holdsLocalCounts(const std::string& first, const std::string& second,
                                             core::TimePoint now) {
    auto held = [&](const std::string& key) {
        if (key.empty()) return false;
        auto l = local_.get(key, now);
        return l && l->failures > 0;
    };
    return held(first) || held(second);
}

bool DegradingPenaltyStore::reset(const std::string& key) {
    local_.reset(key);
    known_.reset(key);
    return primary_.reset(key);
}

namespace {
// How long a shared count reported by the primary is used to start local counting from.
constexpr std::chrono::hours KnownRateAge{1};
}  // namespace

RateStoreResult DegradingRateStore::tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) {
    RateStoreResult r = primary_.tryAdd(requests, now);
    if (r.kind != RateStoreResult::Kind::TempFail) {
        transition(degraded_, false, "rate");
        if (r.kind == RateStoreResult::Kind::Added) learn(requests, r, now);
        return r;
    }
    transition(degraded_, true, "rate");
    // Count on from the shared counts this node last saw, not from zero.
    for (const RateRequest& q : requests)
        if (auto k = known(q.key, now)) local_.raise(q.key, *k, now);
    return local_.tryAdd(requests, now);
}

void DegradingRateStore::learn(const std::vector<RateRequest>& requests, const RateStoreResult& r,
                               core::TimePoint now) {
    if (r.counts.size() != requests.size()) return;  // the primary does not report counts
    std::lock_guard lock(knownMutex_);
    // A key named twice: its later entry includes the earlier amount.
    for (std::size_t i = 0; i < requests.size(); ++i)
        if (requests[i].perHour > 0 || requests[i].perDay > 0)  // a key without a limit needs none
            known_[requests[i].key] = Known{r.counts[i], now};
    if (++learned_ % 1024 == 0)
        std::erase_if(known_, [now](const auto& kv) { return now - kv.second.at >= KnownRateAge; });
}

std::optional<RateCounts> DegradingRateStore::known(const std::string& key, core::TimePoint now) {
    std::lock_guard lock(knownMutex_);
    auto it = known_.find(key);
    if (it == known_.end()) return std::nullopt;
    if (now - it->second.at >= KnownRateAge) {
        known_.erase(it);
        return std::nullopt;
    }
    return it->second.counts;
}

std::size_t DegradingRateStore::knownSize() const {
    std::lock_guard lock(knownMutex_);
    return known_.size();
}

std::optional<RateCounts> DegradingRateStore::get(const std::string& key, core::TimePoint now) {
    if (auto r = primary_.get(key, now)) return r;
    return local_.get(key, now);
}

}  // namespace postern::abuse
