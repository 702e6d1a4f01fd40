// Readiness of the auth backends: asks each backend's probe() (a real query against its
// store) and caches the answer briefly, so a balancer polling /readyz and a Prometheus
// scrape of /metrics do not each hit the directory or database.
#pragma once

#include "api/PluginApi.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace postern::auth {

// One backend's last probe.
struct BackendHealth {
    std::string backend;  // instance name from auth.backends, e.g. "ldap1"
    bool up = false;
    std::string detail;   // why not (or the backend's note when up); for /readyz and logs
};

// check() answers every backend in chain order. A backend whose last answer is older than
// maxAge is probed again by the first caller; concurrent callers wait for that probe (at
// most the backend's own timeout) and share its answer, so each backend is probed at most
// once per maxAge however often readiness is asked. A probe that throws counts as down.
// One log line when a backend turns down (event=backend.down) and when it is back
// (event=backend.up). Thread-safe. The backends are not owned; they must outlive this.
class BackendProbes {
public:
    static constexpr std::chrono::milliseconds DefaultMaxAge{1000};

    explicit BackendProbes(const std::vector<std::pair<std::string, plugins::api::Backend*>>& backends,
                           std::chrono::milliseconds maxAge = DefaultMaxAge);
    ~BackendProbes();
    BackendProbes(const BackendProbes&) = delete;
    BackendProbes& operator=(const BackendProbes&) = delete;

    std::vector<BackendHealth> check();
    // The answers of the probes made so far (check()), without probing or waiting for one in
    // progress: for /metrics, whose scrapes must not hold the endpoint's few threads on a
    // frozen backend (review finding). A backend not probed yet is left out.
    std::vector<BackendHealth> lastKnown() const;

private:
    struct Slot;
    BackendHealth checkOne(Slot& slot);

    const std::chrono::milliseconds maxAge_;
    std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace postern::auth
