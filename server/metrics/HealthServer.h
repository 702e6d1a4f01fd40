// The operator's HTTP endpoint: /healthz (liveness), /readyz (readiness for balancers and
// orchestrators; unready while draining) and /metrics (Prometheus text format 0.0.4), on a
// listener of its own, loopback by default, with its own small thread pool.
#pragma once

#include "metrics/MetricsRegistry.h"

#include <Poco/Net/SocketAddress.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace Poco {
class ThreadPool;
namespace Net {
class HTTPServer;
}
}  // namespace Poco

namespace postern::metrics {

struct HealthServerOptions {
    std::string address = "127.0.0.1";  // IPv4 or IPv6 literal; loopback unless told otherwise
    std::uint16_t port = 0;              // 0: an ephemeral port (tests); see address()
    int maxThreads = 2;                  // its own pool, never POCO's default one
    int maxQueued = 16;                  // beyond: POCO closes the connection (scrapers retry)
    std::chrono::milliseconds timeout{5000};  // per request, read and write
};

struct Readiness {
    bool ready = false;
    std::string reason;  // why not, e.g. "draining"; sent in the 503 body
};

// Serves:
//   GET /healthz  200 "ok"                     while the process can answer at all
//   GET /readyz   200 "ok" when the readiness check says so, else 503 "not ready: <reason>"
//                 (also 503 if the check throws: fail closed)
//   GET /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8"
//   other paths 404; methods other than GET/HEAD 405.
// The registry and the check must outlive the server; the check runs on the server's
// threads and must be thread-safe and quick. start()/stop() from one thread.
class HealthServer {
public:
    using ReadinessCheck = std::function<Readiness()>;

    // Binds the listener at once (throws Poco::Net::NetException if it cannot); serving
    // starts with start().
    HealthServer(const Registry& registry, ReadinessCheck readiness, const HealthServerOptions& options = {});
    ~HealthServer();  // stop()
    HealthServer(const HealthServer&) = delete;
    HealthServer& operator=(const HealthServer&) = delete;

    void start();
    // Stops accepting, aborts requests in progress and joins the pool. Idempotent.
    void stop();
    // The bound address (the real port when options.port was 0).
    Poco::Net::SocketAddress address() const { return address_; }

private:
    std::unique_ptr<Poco::ThreadPool> pool_;
    std::unique_ptr<Poco::Net::HTTPServer> server_;
    Poco::Net::SocketAddress address_;
    bool started_ = false;
    bool stopped_ = false;
};

}  // namespace postern::metrics
