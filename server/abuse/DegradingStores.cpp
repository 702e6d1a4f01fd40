#include "abuse/DegradingStores.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

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

std::optional<PenaltyCount> DegradingPenaltyStore::increment(const std::string& key, core::TimePoint now,
                                                             std::chrono::milliseconds window) {
    if (auto r = primary_.increment(key, now, window)) {
        transition(degraded_, false, "penalty");
        return r;
    }
    transition(degraded_, true, "penalty");
    return local_.increment(key, now, window);
}

std::optional<PenaltyCount> DegradingPenaltyStore::get(const std::string& key, core::TimePoint now) {
    auto r = primary_.get(key, now);
    if (r) {
        transition(degraded_, false, "penalty");
        // Failures counted here during an outage still count after it.
        if (auto l = local_.get(key, now); l && l->failures > r->failures) return l;
        return r;
    }
    transition(degraded_, true, "penalty");
    return local_.get(key, now);
}

std::optional<std::pair<PenaltyCount, PenaltyCount>> DegradingPenaltyStore::getPair(const std::string& first,
                                                                                    const std::string& second,
                                                                                    core::TimePoint now) {
    auto r = primary_.getPair(first, second, now);
    if (!r) {
        transition(degraded_, true, "penalty");
        return local_.getPair(first, second, now);
    }
    transition(degraded_, false, "penalty");
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
    return primary_.reset(key);
}

RateStoreResult DegradingRateStore::tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) {
    RateStoreResult r = primary_.tryAdd(requests, now);
    if (r.kind != RateStoreResult::Kind::TempFail) {
        transition(degraded_, false, "rate");
        return r;
    }
    transition(degraded_, true, "rate");
    return local_.tryAdd(requests, now);
}

std::optional<RateCounts> DegradingRateStore::get(const std::string& key, core::TimePoint now) {
    if (auto r = primary_.get(key, now)) return r;
    return local_.get(key, now);
}

}  // namespace postern::abuse
