#include "delivery/MtaStsRoute.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>

namespace postern::delivery {

StsVerdict applyMtaSts(mtasts::Engine& engine, const std::string& domain, std::vector<MxHost>& hosts,
                       const std::string& id, core::EventCounters& counters, const std::set<std::string>& daneHosts) {
    StsVerdict v;
    mtasts::Lookup l = engine.policyFor(domain, id);
    if (!l.policy) return v;
    v.mode = l.policy->mode;
    auto refuses = [&](const MxHost& h) { return !daneHosts.contains(h.name) && !mtasts::mxAllowed(*l.policy, h.name); };
    std::string refused;
    for (const auto& h : hosts)
        if (refuses(h)) refused += (refused.empty() ? "" : ",") + h.name;
    if (refused.empty()) return v;
    auto& log = Poco::Logger::get("postern.delivery");
    log.information(core::EventLine::inSession(id, v.enforce() ? "mta_sts.mx_skip" : "mta_sts.testing_fail")
                        .add("domain", domain)
                        .add("mode", mtasts::modeName(v.mode))
                        .add("hosts", refused)
                        .text("reason", "MX host not named in the policy")
                        .str());
    if (!v.enforce()) {
        counters.count("mta_sts_testing_fail", "mx_mismatch");
        return v;
    }
    hosts.erase(std::remove_if(hosts.begin(), hosts.end(), refuses), hosts.end());
    if (hosts.empty()) v.deferReason = "no MX host of " + domain + " matches its MTA-STS policy";
    return v;
}

}  // namespace postern::delivery
