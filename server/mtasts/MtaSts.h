// The MTA-STS policy in force for a recipient domain (RFC 8461 5): TXT lookup of
// _mta-sts.<domain>; a cached, unexpired policy with the same id is used as is; a new id
// (or no cached policy) fetches the policy over HTTPS; a failed fetch keeps a cached,
// unexpired policy; without either the domain has no policy. The absence of the TXT record
// does not drop an unexpired cached policy (RFC 8461 10.2: the record may be suppressed).
#pragma once

#include "core/EventCounters.h"
#include "mtasts/Fetcher.h"
#include "mtasts/PolicyCache.h"
#include "mtasts/Policy.h"
#include "mtasts/TxtLookup.h"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace postern::mtasts {

struct Settings {
    FetchSettings fetch;
    std::string dnsServer;                   // delivery.dns_server
    std::chrono::milliseconds dnsTimeout{};  // delivery.dns_timeout
    std::string cacheFile;                   // "" = memory only
    std::chrono::seconds fetchRetry{};       // delivery.mta_sts.fetch_retry: after a failed fetch
    std::chrono::seconds refreshInterval{};  // delivery.mta_sts.refresh_interval (0 = only at a new id)
};

struct Lookup {
    std::optional<Policy> policy;  // nullopt: no policy (or mode none)
    std::string id;
    const char* source = "none";   // "cache", "fetch", "none"
};

// Thread-safe.
class Engine {
public:
    using TxtFunction = std::function<TxtAnswer(const std::string& name)>;

    // Throws std::runtime_error if the CA file cannot be loaded.
    Engine(Settings settings, HostResolver resolve, core::EventCounters* counters = nullptr);

    // `sessionId`: the queue id of the message, for the log lines.
    Lookup policyFor(const std::string& domain, const std::string& sessionId);

    PolicyCache& cache() { return cache_; }
    void setCounters(core::EventCounters* counters) { counters_ = counters ? counters : counters_; }
    // Tests: replace the DNS TXT lookup; and the clock (unix seconds).
    void setTxtLookup(TxtFunction f) { txt_ = std::move(f); }
    void setClock(std::function<std::int64_t()> now) { now_ = std::move(now); }
    void setFetcher(std::function<FetchResult(const std::string&)> f) { fetch_ = std::move(f); }

private:
    Settings settings_;
    std::unique_ptr<Fetcher> fetcher_;
    core::EventCounters* counters_;
    PolicyCache cache_;
    TxtFunction txt_;
    std::function<std::int64_t()> now_;
    std::function<FetchResult(const std::string&)> fetch_;
    // domain -> (id, unix seconds) of its last failed fetch: not tried again before
    // fetchRetry has passed (a broken policy server must not slow every delivery down).
    std::mutex failedMutex_;
    std::map<std::string, std::pair<std::string, std::int64_t>> failed_;
};

}  // namespace postern::mtasts
