// MTA-STS (RFC 8461 4, 5) applied to the MX hosts of one route: under enforce only the hosts
// the policy names stay, and TLS with a verified certificate is required; under testing
// every host stays and what enforce would refuse is logged.
#pragma once

#include "core/EventCounters.h"
#include "delivery/MxResolver.h"
#include "mtasts/MtaSts.h"

#include <set>
#include <string>
#include <vector>

namespace postern::delivery {

struct StsVerdict {
    mtasts::Mode mode = mtasts::Mode::None;  // None: no policy (deliver as configured)
    std::string deferReason;                 // enforce and no host left: why (for log and queue)
    bool enforce() const { return mode == mtasts::Mode::Enforce; }
    bool testing() const { return mode == mtasts::Mode::Testing; }
};

// Looks up the policy of `domain` and filters `hosts` in place (enforce). `id`: queue id for
// logs. `daneHosts`: hosts DANE governs (RFC 8461 2), kept and not checked against the policy.
StsVerdict applyMtaSts(mtasts::Engine& engine, const std::string& domain, std::vector<MxHost>& hosts,
                       const std::string& id, core::EventCounters& counters,
                       const std::set<std::string>& daneHosts = {});

}  // namespace postern::delivery
