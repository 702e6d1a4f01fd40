// The running daemon's objects, built step by step from DaemonSettings (ModuleSettings.h)
// by small builders, one per area, in start-up order. The members are declared in that
// order, so they are destroyed in reverse: listeners before the services they use, the
// services before the stores, the stores before the cluster pool, the auth facade before
// the plugins. PosternServer::serve() calls the builders; nothing here reads the config.
#pragma once

#include "app/ConnectionRegistry.h"
#include "app/CountingGrantStore.h"
#include "app/ModuleSettings.h"
#include "app/Services.h"
#include "app/Telemetry.h"

#include <Poco/Net/Context.h>
#include <Poco/Util/Timer.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace Poco {
class ThreadPool;
namespace Net {
class TCPServer;
}
}  // namespace Poco

namespace postern {
namespace auth {
class PluginLoader;
class BackendHandle;
class AuthFacade;
class AuthCache;
class HashGate;
class Rehasher;
}  // namespace auth
namespace pg {
class Pool;
class ReadRouter;
}
namespace abuse {
class PgPenaltyStore;
class PgRateStore;
class AuthPenalty;
class PenalizedAuthService;
class RateLimiter;
class OutboundLimits;
class ConnectionGate;
class AccountSecurityStore;
class AccountSecurity;
class LoginRecordingAuthService;
}  // namespace abuse
namespace grants {
class MemoryGrantStore;
class PgGrantStore;
class WriteBehindGrantStore;
}  // namespace grants
namespace store {
class MaildirStore;
class MailSpool;
class PgMaildropLock;
class ClusterMaildropService;
class SpoolSink;
class GroupCommit;
}  // namespace store
namespace queue {
class OutboundQueue;
}
namespace dkim {
class KeyStore;
class SigningSink;
}
namespace delivery {
class BounceSender;
class DeliveryService;
}
namespace milter {
class MilterFactoryImpl;
}
namespace policyd {
class PolicyDelegation;
}
namespace metrics {
class HealthServer;
}
}  // namespace postern

namespace postern::app {

class ClusterPop3Login;

// A start-up failure that a later start may not meet: a listening address not configured
// yet at boot or a port still held by a process on its way out (EADDRNOTAVAIL, EADDRINUSE),
// the queue directory locked by a posternd still draining. posternd then exits 75
// (EX_TEMPFAIL), which the systemd units restart, instead of 78 (EX_CONFIG), which they do not.
class TransientStartupError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RunningListener {
    std::unique_ptr<Poco::ThreadPool> pool;
    std::unique_ptr<Poco::Net::TCPServer> server;
    std::string name;
};

class Daemon {
public:
    explicit Daemon(DaemonSettings settings);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // posternd --check: reads what start-up reads before it binds (the TLS certificates and
    // keys, each auth backend's plugin with its keys, the DKIM key directory, the cluster's
    // password file, the relay host's credentials) and throws on the first that fails, as
    // start-up would. Nothing is bound, connected to, written or started.
    void checkFiles();

    // Start-up, in this order (each builder needs the ones before it).
    void refuseRootWithoutUser() const;  // before anything is bound or read
    void buildTls();                     // server TLS context (key file checked)
    void buildAuth();                    // plugins, backend chain, facade, cache
    void buildCluster();                 // shared PostgreSQL pool and its penalty/rate stores
    void buildAbuse();                   // failed-login penalty, outbound limits, connection gate
    void buildGrants();                  // POP-before-SMTP grant store (memory or PostgreSQL)
    void buildStorage();                 // Maildir store, spool, maildrop lock, queue, sink, delivery
    void buildDkim();                    // DKIM keys and the signing sink in front of the spool
    void buildServices();                // the Services the connections share
    void registerGauges();               // metrics read from the objects above
    void startSweepers();                // expired grants and counters
    void bindListeners();                // sockets bound, servers built (not started)
    void dropPrivileges() const;         // server.user / server.group
    void startServing();                 // spool, listeners, health endpoint, delivery, ready file
    void startGroupCommit();             // store.group_commit, after the spool started
    void reloadTls();                    // SIGHUP: new certificate/key, old context kept on error
    void clearAuthCache();               // SIGHUP: every login asks its backend again
    void reloadDkim();                   // SIGHUP: DKIM keys read again, old set kept on error
    // SIGTERM: tell the balancer (server.drain_delay; the signals end that early), stop
    // accepting, let sessions finish. False when sessions were still running after the last
    // abort: the caller must then end the process without running destructors under them.
    bool drain(const sigset_t& signals);

    const DaemonSettings& settings() const { return settings_; }

private:
    void bindHealth();
    void buildAccountSecurity();  // compromised-account detection + login log (end of buildAbuse)
    void checkSecretFiles() const;  // TLS keys not readable by every user
    void writeReadyFile() const;
    void announceDrain(const sigset_t& signals);  // server.drain_delay: /readyz 503, still serving

    // /readyz is 503 from the start of the drain-delay; the listeners still serve then.
    std::atomic<bool> draining_{false};
    // When the readiness check last ran (steady clock, ns; 0 = never): is a balancer polling?
    std::atomic<std::int64_t> lastReadyProbe_{0};

    const DaemonSettings settings_;
    Poco::Net::Context::Ptr tls_;
    std::unique_ptr<auth::PluginLoader> loader_;
    std::vector<auth::BackendHandle> handles_;
    Telemetry telemetry_;
    std::unique_ptr<auth::AuthFacade> facade_;
    std::unique_ptr<auth::AuthCache> authCache_;
    std::unique_ptr<auth::HashGate> hashGate_;  // auth.max_parallel_hashes (used by the facade while serving)
    std::unique_ptr<auth::Rehasher> rehasher_;  // after the facade and handles: stopped first
    std::unique_ptr<pg::Pool> clusterPool_;
    std::unique_ptr<pg::ReadRouter> clusterReads_;  // cluster.read_conninfo (null = none)
    std::unique_ptr<abuse::PgPenaltyStore> pgPenalty_;
    std::unique_ptr<abuse::PgRateStore> pgRates_;
    std::unique_ptr<abuse::AuthPenalty> penalty_;
    std::unique_ptr<abuse::PenalizedAuthService> guardedAuth_;
    std::unique_ptr<abuse::RateLimiter> rateLimiter_;
    std::unique_ptr<abuse::OutboundLimits> outboundLimits_;
    std::unique_ptr<abuse::ConnectionGate> gate_;
    std::unique_ptr<policyd::PolicyDelegation> policy_;  // null when policy.service is empty
    std::unique_ptr<milter::MilterFactoryImpl> milters_;  // null when no milter is configured
    std::unique_ptr<abuse::AccountSecurityStore> accountStore_;          // PostgreSQL or memory
    std::unique_ptr<abuse::AccountSecurity> accountSecurity_;            // holds, login log
    std::unique_ptr<abuse::LoginRecordingAuthService> recordedAuth_;     // in front of guardedAuth_
    std::unique_ptr<grants::MemoryGrantStore> memoryGrants_;
    std::unique_ptr<grants::PgGrantStore> pgGrants_;
    std::unique_ptr<grants::WriteBehindGrantStore> heldGrants_;
    core::GrantStore* grantStore_ = nullptr;  // one of the three above, or null (feature off)
    std::unique_ptr<store::MaildirStore> mailStore_;
    std::unique_ptr<store::MailSpool> mailSpool_;
    std::unique_ptr<store::GroupCommit> groupCommit_;  // store.group_commit; outlives sink_
    std::unique_ptr<store::PgMaildropLock> maildropLock_;
    std::unique_ptr<store::ClusterMaildropService> clusterMaildrops_;
    core::MaildropService* maildrops_ = nullptr;  // mailStore_ or clusterMaildrops_
    int queueLockFd_ = -1;  // flock on <server.queue_dir>/posternd.lock: one daemon per queue
    std::unique_ptr<queue::OutboundQueue> queue_;
    std::unique_ptr<store::SpoolSink> sink_;
    std::unique_ptr<dkim::KeyStore> dkimKeys_;       // null: DKIM signing not configured
    std::unique_ptr<dkim::SigningSink> dkimSink_;    // sessions' sink when signing (wraps sink_)
    std::unique_ptr<delivery::BounceSender> successReports_;  // DSN "delivered" reports (sink hook)
    std::unique_ptr<delivery::DeliveryService> delivery_;
    std::unique_ptr<CountingGrantStore> countedGrants_;
    std::unique_ptr<ClusterPop3Login> pop3Login_;  // cluster: POP3 login in one statement
    ConnectionRegistry registry_;
    std::unique_ptr<Services> services_;
    struct ClusterSweeper;
    std::unique_ptr<ClusterSweeper> clusterSweeper_;
    std::unique_ptr<Poco::Util::Timer> timer_;  // its thread starts with the timer: made in startSweepers()
    std::vector<RunningListener> listeners_;
    std::unique_ptr<metrics::HealthServer> health_;
};

// Signals are taken synchronously by the main thread (sigwait); call before any thread is
// started (the Daemon's constructor starts none) so every thread inherits the blocked mask.
sigset_t blockDaemonSignals();

// Waits for SIGTERM/SIGINT/SIGQUIT; SIGHUP reloads the TLS certificate and key.
void runSignalLoop(Daemon& daemon, const sigset_t& signals);

}  // namespace postern::app
