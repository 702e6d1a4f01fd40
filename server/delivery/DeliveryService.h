// Outbound delivery as one unit for the daemon: resolver, TLS client contexts, SMTP
// client settings, bounce sender, delivery agent and queue runner, wired once.
#pragma once

#include "config/ServerConfig.h"
#include "core/AccountSecurity.h"
#include "core/EventCounters.h"
#include "core/MessageSink.h"
#include "core/UserDirectory.h"
#include "queue/OutboundQueue.h"

#include <functional>
#include <memory>
#include <string>

namespace postern::mtasts {
class Engine;
class SharedPolicyStore;
}
namespace postern::pg {
class Pool;
}

namespace postern::delivery {

class MxResolver;
class BounceSender;
class DeliveryAgent;
class QueueRunner;

// Owns the delivery machinery; borrows the config, queue, sink and directory, which must
// outlive it. Construct after the sink (bounces are injected through it), start() after
// the listeners are up, stop() before the listener pools are joined. Throws
// std::runtime_error at construction on a bad delivery.relayhost_auth_file or CA file.
class DeliveryService {
public:
    DeliveryService(const config::DeliveryConfig& config, std::string hostname, queue::OutboundQueue& queue,
                    core::MessageSink& sink, core::UserDirectory& directory);
    ~DeliveryService();

    // Compromised-account detection: held submitters' mail waits, delivery outcomes are
    // reported per submitting account. Call before start() (either may be null).
    void setAccountSecurity(const core::AccountHold* hold, core::DeliveryReport* report);
    // Where delivery outcomes (TLS policy used, MTA-STS fetches and deferrals) are counted.
    // Call before start().
    void setCounters(core::EventCounters* counters);
    // Clustered: MTA-STS policies are shared with the other nodes in this database (table
    // mta_sts_policies). Call before start(); the pool must outlive the service.
    void shareMtaStsPolicies(pg::Pool& pool);

    // TLS policy outcomes per delivery (policy, ok|fail, DANE failure reason) for /metrics.
    // Call before start().
    void setTlsOutcomeSink(std::function<void(const std::string&, const std::string&, const std::string&)> sink);

    // Scans the queue, starts the workers and subscribes to new mail.
    void start();
    // Unsubscribes, aborts connections in progress (their recipients stay queued), joins.
    void stop();
    // Age of the oldest message waiting for delivery, in seconds (metrics).
    double oldestAgeSeconds() const;

private:
    queue::OutboundQueue& queue_;
    std::unique_ptr<MxResolver> resolver_;
    std::unique_ptr<BounceSender> bounces_;
    std::unique_ptr<mtasts::SharedPolicyStore> mtaStsShared_;
    std::unique_ptr<mtasts::Engine> mtaSts_;  // null: delivery.mta_sts off
    std::unique_ptr<DeliveryAgent> agent_;
    std::unique_ptr<QueueRunner> runner_;
};

}  // namespace postern::delivery
