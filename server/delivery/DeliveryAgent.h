// One delivery attempt of one queued message: route each recipient (transport override,
// smarthost or MX), talk SMTP, record the results durably in the queue, bounce what
// failed permanently or expired (RFC 3464), schedule the retry of the rest.
#pragma once

#include "config/ServerConfig.h"
#include "core/AccountSecurity.h"
#include "delivery/BounceSender.h"
#include "delivery/ConnectionPool.h"
#include "delivery/MxResolver.h"
#include "core/EventCounters.h"
#include "mtasts/MtaSts.h"
#include "delivery/SmtpClient.h"
#include "queue/OutboundQueue.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace postern::delivery {

// The open connections of one worker, keyed by "ip:port/host/route/policy", reused for the
// next message to the same place (RSET in between). With a shared ConnectionPool, find()
// also takes an idle connection parked there by any worker, and parkAll() hands this
// worker's connections back to it instead of closing them. A connection past the pool's
// reuse limit is never used again. abortAll() may be called from another thread
// (shutdown); everything else belongs to the owning worker.
class ConnectionCache {
public:
    explicit ConnectionCache(ConnectionPool* pool = nullptr) : pool_(pool) {}

    // A usable connection for `key` (after a successful RSET), or nullptr (then the caller
    // opens a new one: a stale cached or pooled connection is not a delivery failure).
    SmtpClient* find(const std::string& key);
    SmtpClient* put(const std::string& key, std::unique_ptr<SmtpClient> client);
    void drop(const std::string& key);
    void closeAll();  // QUIT and close
    // Every connection to the pool (those it does not keep are closed). True when the
    // pool's sweeper must be told (ConnectionPool::park). Without a pool: closeAll().
    bool parkAll();
    // shutdown(2) every socket now: blocked reads/writes return at once. For good: a client
    // put() afterwards never connects, so a worker whose session was cut does not go on to
    // the next MX address or route group while the daemon stops.
    void abortAll();

private:
    using Clock = std::chrono::steady_clock;
    struct Entry {
        std::unique_ptr<SmtpClient> client;
        Clock::time_point opened;
    };
    bool tooOld(const Entry& e) const { return pool_ && Clock::now() >= e.opened + pool_->reuseLimit(); }

    ConnectionPool* pool_;
    std::mutex mutex_;
    std::map<std::string, Entry> clients_;
    bool aborted_ = false;  // guarded by mutex_
};

// Thread-safe: every worker calls deliver() with its own ConnectionCache. Shares the queue,
// resolver and bounce sender, which are thread-safe.
class DeliveryAgent {
public:
    DeliveryAgent(const config::DeliveryConfig& config, std::string hostname, queue::OutboundQueue& queue,
                  MxResolver& resolver, BounceSender& bounces, ClientSettings clientSettings,
                  std::optional<Credentials> relayCredentials);

    // Attempts every recipient still in the envelope of `id` now. Returns the envelope as
    // left in the queue, or as this process knows it when the queue could not be rewritten
    // (see Unrecorded); nullopt: nothing is left to do (all done, or deleted meanwhile).
    std::optional<queue::QueueEnvelope> deliver(const std::string& id, ConnectionCache& connections);

    // Where remote 5xx refusals and bounces are reported per submitting account (null: not
    // reported). Set before the first deliver().
    void setReport(core::DeliveryReport* report) { report_ = report; }
    // MTA-STS for MX routes (null: off), and where per-delivery outcomes are counted.
    void setMtaSts(mtasts::Engine* engine) { mtaSts_ = engine; }
    void setCounters(core::EventCounters* counters) { counters_ = counters ? counters : counters_; }

    // Called once per route attempt and recipient group with the TLS policy in force
    // (tls_policy= of the log lines), "ok" or "fail", and the DANE failure reason ("" if
    // none): the /metrics counters. Set before the first deliver(); thread-safe callee.
    using TlsOutcomeSink = std::function<void(const std::string& policy, const std::string& result,
                                              const std::string& daneFailure)>;
    void setTlsOutcomeSink(TlsOutcomeSink sink) { tlsOutcomes_ = std::move(sink); }

    // Reads delivery.relayhost_auth_file ("user:password" on the first line). Throws
    // std::runtime_error if it cannot be read, is malformed, or is group/world-readable.
    static Credentials readCredentialsFile(const std::string& path);

private:
    struct Route;
    struct Outcome;
    Route routeFor(const std::string& domain) const;
    void deliverRoute(const Route& route, const queue::QueueEnvelope& envelope, const MessageData& message,
                      const std::vector<std::size_t>& indexes, std::vector<Outcome>& outcomes,
                      ConnectionCache& connections);

    // What an attempt could not write into a message's envelope (ENOSPC, EIO): recipients
    // delivered or bounced, the attempt count and the retry time. The next attempt of this
    // process leaves those recipients out and keeps that retry time (a rescan reads the
    // file's older one), and writes them once it can. Lost at a restart: then at most the
    // one duplicate of the unavoidable RFC 1047 window follows.
    struct Unrecorded {
        std::set<std::string> done;
        std::uint32_t attempts = 0;
        std::chrono::system_clock::time_point notBefore{};
        bool warned = false;  // the delay report was sent
        std::map<std::string, queue::OwedReport> owed;  // failed for good, report still owed
    };
    void rememberUnrecorded(const std::string& id, const std::set<std::string>& done, std::uint32_t attempts,
                            std::chrono::system_clock::time_point notBefore, bool warned,
                            const std::map<std::string, queue::OwedReport>& owed = {});
    // The envelope now says everything (a later write succeeded, or the message is gone).
    void forgetUnrecorded(const std::string& id);
    // Applies (and tries to write) what is remembered for `id` to `envelope`; `carried`
    // gets the recipients it left out, for the attempt's final write. A value: the message
    // is not due yet, or nothing is left of it (empty recipients): return that.
    std::optional<queue::QueueEnvelope> applyUnrecorded(const std::string& id, queue::QueueEnvelope& envelope,
                                                        std::set<std::string>& carried);

    const config::DeliveryConfig& config_;
    std::string hostname_;
    queue::OutboundQueue& queue_;
    MxResolver& resolver_;
    BounceSender& bounces_;
    ClientSettings clientSettings_;
    std::optional<Credentials> relayCredentials_;
    core::DeliveryReport* report_ = nullptr;
    TlsOutcomeSink tlsOutcomes_;
    mtasts::Engine* mtaSts_ = nullptr;
    core::EventCounters* counters_ = &core::NullEventCounters::instance();
    std::mutex unrecordedMutex_;
    std::map<std::string, Unrecorded> unrecorded_;
    std::atomic<std::size_t> unrecordedCount_{0};  // unrecorded_.size(), read without the lock
};

}  // namespace postern::delivery
