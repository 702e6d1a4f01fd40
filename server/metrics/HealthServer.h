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
class TCPServer;
}
namespace Util {
class Timer;
}
}  // namespace Poco

namespace postern::metrics {

struct HealthServerOptions {
    std::string address;                 // set from health.address: IPv4 or IPv6 literal
    std::uint16_t port = 0;              // 0: an ephemeral port (tests); see address()
    int maxThreads = 2;                  // its own pool, never POCO's default one
    int maxQueued = 16;                  // beyond: POCO closes the connection (scrapers retry)
    std::chrono::milliseconds timeout{5000};  // per read and per write of the socket
    // Longest a client may take to send its whole request head (health.request_timeout):
    // then the connection is cut, so slow clients cannot hold the few threads (slowloris).
    std::chrono::milliseconds requestTimeout{};  // set from health.request_timeout
    // Longest a /readyz request waits for the readiness check (health.ready_timeout); past
    // it the answer is 503 "not ready: probe timed out" and the check finishes in the
    // background. Keep it below the balancer's own probe timeout.
    std::chrono::milliseconds readyTimeout{};  // set from health.ready_timeout

    bool operator==(const HealthServerOptions&) const = default;
};

struct Readiness {
    bool ready = false;
    std::string reason;  // why not, e.g. "draining"; sent in the 503 body
};

// Serves:
//   GET /healthz  200 "ok"                     while the process can answer at all
//   GET /readyz   200 "ok" when the readiness check says so, else 503 "not ready: <reason>"
//                 (also 503 if the check throws: fail closed), within readyTimeout: the
//                 check runs on one probe thread of its own, never on the request's; a
//                 request starts a run (or joins the one in progress) and waits for it at
//                 most readyTimeout, else 503 "not ready: probe timed out". A check that
//                 hangs (a frozen database) thus costs no HTTP thread and never more than
//                 one probe thread, and concurrent requests share one run.
//   GET /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8"
//   other paths 404; methods other than GET/HEAD 405.
// A client has options.requestTimeout to send its request line and headers (probes send them
// at once), else the connection is cut unanswered; then readyTimeout + requestTimeout to
// take the answer (a client that does not read it is cut too).
// The registry and the check must outlive the server; the check runs on the probe thread,
// one run at a time, and should itself be bounded (stop() waits for a run in progress).
// start()/stop() from one thread.
class HealthServer {
public:
    using ReadinessCheck = std::function<Readiness()>;

    // Binds the listener at once (throws Poco::Net::NetException if it cannot;
    // std::invalid_argument for a timeout <= 0); serving starts with start().
    HealthServer(const Registry& registry, ReadinessCheck readiness, const HealthServerOptions& options);
    ~HealthServer();  // stop()
    HealthServer(const HealthServer&) = delete;
    HealthServer& operator=(const HealthServer&) = delete;

    void start();
    // Stops accepting and joins the pool: a connection in progress ends within requestTimeout
    // (its head) plus readyTimeout and requestTimeout again (its answer). Idempotent.
    void stop();
    // The bound address (the real port when options.port was 0).
    Poco::Net::SocketAddress address() const { return address_; }

    class Probe;  // the probe thread (HealthServer.cpp)

private:
    std::shared_ptr<Probe> probe_;
    std::unique_ptr<Poco::ThreadPool> pool_;
    std::unique_ptr<Poco::Util::Timer> timer_;  // cuts connections past requestTimeout
    std::unique_ptr<Poco::Net::TCPServer> server_;
    Poco::Net::SocketAddress address_;
    bool started_ = false;
    bool stopped_ = false;
};

}  // namespace postern::metrics
