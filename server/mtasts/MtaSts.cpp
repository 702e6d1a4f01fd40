#include "mtasts/MtaSts.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

namespace postern::mtasts {

namespace {
Poco::Logger& logger() { return Poco::Logger::get("postern.delivery"); }
}  // namespace

Engine::Engine(Settings settings, HostResolver resolve, core::EventCounters* counters)
    : settings_(std::move(settings)),
      fetcher_(std::make_unique<Fetcher>(settings_.fetch, std::move(resolve))),
      counters_(counters ? counters : &core::NullEventCounters::instance()),
      cache_(settings_.cacheFile, [this] { return now_(); }) {  // now_ is set below (and by setClock)
    txt_ = [this](const std::string& name) { return lookupTxt(name, settings_.dnsServer, settings_.dnsTimeout); };
    now_ = [] {
        return static_cast<std::int64_t>(
            std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    };
    fetch_ = [this](const std::string& domain) { return fetcher_->fetch(domain); };
}

Lookup Engine::policyFor(const std::string& domain, const std::string& sessionId) {
    Lookup out;
    const std::int64_t now = now_();
    std::optional<CachedPolicy> cached = cache_.get(domain);
    if (cached && cached->expires <= now) cached.reset();  // expired: as if never fetched

    TxtAnswer txt = txt_("_mta-sts." + domain);
    std::optional<std::string> id;
    if (txt.status == TxtStatus::Found) id = stsIdFromRecords(txt.records);

    auto useCached = [&] {
        if (cached && cached->policy.mode != Mode::None) out.policy = cached->policy;
        if (cached) {
            out.id = cached->id;
            out.source = "cache";
        }
        return out;
    };
    // No (usable) record, or the DNS cannot answer now: an unexpired cached policy stays.
    if (!id) return useCached();
    // The same id: the cached policy, unless it is due for a refresh (RFC 8461 10.2: a policy
    // fetched again ahead of its expiry cannot lapse while an attacker blocks the fetch).
    auto due = [&](const CachedPolicy& c) {
        return settings_.refreshInterval.count() > 0 && now >= c.fetched + settings_.refreshInterval.count();
    };
    const bool refreshing = cached && cached->id == *id;
    if (refreshing && !due(*cached)) return useCached();
    // Another cluster node may have fetched this id already (shared store): no fetch then.
    if (auto shared = cache_.fromShared(domain);
        shared && shared->id == *id && shared->expires > now && !(refreshing && due(*shared))) {
        std::string error;
        if (!cache_.put(*shared, &error, false))
            logger().error(core::EventLine::inSession(sessionId, "mta_sts.cache_write_fail").text("error", error).str());
        cached = shared;
        return useCached();
    }

    {
        std::lock_guard lock(failedMutex_);
        auto it = failed_.find(domain);
        if (it != failed_.end() && it->second.first == *id && now < it->second.second + settings_.fetchRetry.count())
            return useCached();
    }
    FetchResult f = fetch_(domain);
    std::optional<Policy> policy;
    std::string parseError;
    if (f.ok) {
        policy = parsePolicy(f.body, &parseError);
        if (!policy) f.error = "invalid policy: " + parseError;
    }
    {
        std::lock_guard lock(failedMutex_);
        if (policy) failed_.erase(domain);
        else failed_[domain] = {*id, now};
    }
    if (!policy) {
        counters_->count("mta_sts_fetch", "fail");
        logger().warning(core::EventLine::inSession(sessionId, "mta_sts.fetch")
                             .add("domain", domain)
                             .add("id", *id)
                             .add("result", "fail")
                             .add("cached", cached ? "yes" : "no")
                             .text("error", f.error)
                             .add("retry", settings_.fetchRetry.count(), "s")
                             .str());
        return useCached();
    }
    counters_->count("mta_sts_fetch", "ok");
    CachedPolicy entry{domain, *id, *policy, now, now + policy->maxAge};
    std::string mx;
    for (const auto& m : policy->mx) mx += (mx.empty() ? "" : ",") + m;
    logger().information(core::EventLine::inSession(sessionId, "mta_sts.fetch")
                             .add("domain", domain)
                             .add("id", *id)
                             .add("result", "ok")
                             .add("mode", modeName(policy->mode))
                             .add("max_age", policy->maxAge)
                             .add("mx", mx.empty() ? "-" : mx)
                             .add("max_age_capped", policy->maxAgeCapped ? "yes" : "no")
                             .str());
    std::string error;
    if (!cache_.put(entry, &error))
        logger().error(core::EventLine::inSession(sessionId, "mta_sts.cache_write_fail").text("error", error).str());
    if (policy->mode != Mode::None) out.policy = *policy;
    out.id = *id;
    out.source = "fetch";
    return out;
}

}  // namespace postern::mtasts
