// Connections to the configured LDAP servers: a bounded pool per server, health marks,
// a background probe, and "first healthy server in configured order" routing with one
// retry on the next server after a server failure.
#pragma once

#include "LdapConfig.h"
#include "LdapConnection.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace postern::plugins::ldap {

// Failover design (better than sticking to the first server that ever worked):
// - Each request goes to the first server, in configured order, that is marked up; so
//   once the preferred server is healthy again, new requests return to it (fail-back).
// - A server failure (connection refused/lost, timeout, busy, unavailable, failed
//   StartTLS) marks that server down, drops its idle connections and retries the request
//   once on the next server that is up. A failure on a connection reused from the pool is
//   first retried on a fresh connection to the same server (slapd may just have restarted).
// - A probe thread wakes every probe_interval and tries to connect (and bind as the
//   service, if configured) to each server marked down; success marks it up again.
// - If no server is up the request fails at once with TempFail (no connect storm); the
//   probe brings a server back within probe_interval.
// - Each server has at most pool_size connections; a request waits up to search_timeout
//   for a free one, then fails with TempFail (overload, not an outage: no down mark). A
//   request waiting for a server that gets marked down meanwhile stops waiting at once.
// - Deadlines: connect network_timeout, bind bind_timeout, search search_timeout, StartTLS
//   max(bind, search) (LDAP_OPT_TIMEOUT). A connection that missed one is abandoned and
//   closed (never pooled again) and its server is marked down, so a frozen server (the
//   kernel still accepts connections, nothing answers) costs a request one deadline.
// Thread-safe. Owns its connections and the probe thread (joined in the destructor).
class LdapServerPool {
public:
    // Runs on a connection of the chosen server and returns its LDAP result: a server
    // failure (LdapResult::isServerFailure) triggers the fail-over, anything else is the
    // answer. Must be idempotent and reset its outputs: it may run up to three times.
    using Operation = std::function<LdapResult(LdapConnection&)>;

    explicit LdapServerPool(const LdapConfig& config);
    ~LdapServerPool();
    LdapServerPool(const LdapServerPool&) = delete;
    LdapServerPool& operator=(const LdapServerPool&) = delete;

    // Runs op as described above. Returns op's last result, or a failure result
    // (LDAP_SERVER_DOWN / LDAP_TIMEOUT) if no connection could be had. `server` receives
    // the URI that answered (or was tried last).
    LdapResult run(const Operation& op, std::string& server);

    // For tests and logs: is the server at this index marked up?
    bool isUp(std::size_t index) const;

private:
    struct Server {
        std::string uri;
        std::atomic<bool> up{true};
        std::mutex mutex;  // guards idle and open
        std::condition_variable freed;
        std::vector<LdapConnectionPtr> idle;
        int open = 0;  // connections handed out or idle
    };

    struct Lease {
        LdapConnectionPtr connection;
        bool reused = false;
    };

    // A connection to `server`: an idle one, a new one, or (pool full) wait for a free one.
    // nullptr with `failure` set if it cannot connect or times out.
    Lease acquire(Server& server, bool fresh, LdapResult& failure);
    void release(Server& server, LdapConnectionPtr connection);  // nullptr: discard
    void markDown(Server& server, const LdapResult& why);
    void markUp(Server& server);
    void probeLoop();
    bool probe(Server& server);

    const LdapConfig& config_;
    std::vector<std::unique_ptr<Server>> servers_;
    std::mutex probeMutex_;
    std::condition_variable probeWake_;
    bool stopping_ = false;  // guarded by probeMutex_
    bool probeNow_ = false;  // guarded by probeMutex_: a server was just marked down
    std::thread probeThread_;
};

}  // namespace postern::plugins::ldap
