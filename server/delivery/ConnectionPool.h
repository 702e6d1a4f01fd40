// The outbound connection cache shared by all delivery workers (like Postfix's scache with
// smtp_connection_cache_time_limit / smtp_connection_reuse_time_limit): open SMTP sessions
// left idle after a message, keyed like ConnectionCache ("ip:port/host/route/policy"), for
// the next message to the same next hop, whichever worker delivers it.
#pragma once

#include "delivery/SmtpClient.h"

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace postern::delivery {

// Ownership: a connection is either in the pool (idle) or owned by exactly one worker's
// ConnectionCache; take() and park() hand it over. The pool's mutex guards only the map:
// no network I/O is done while holding it (QUIT happens after the connection left the map).
// Thread-safe.
class ConnectionPool {
public:
    using Clock = std::chrono::steady_clock;

    // idleLimit: delivery.connection_cache_time_limit (0 = off: park() closes at once);
    // reuseLimit: delivery.connection_reuse_time_limit (no reuse once a connection is older).
    ConnectionPool(Millis idleLimit, Millis reuseLimit) : idleLimit_(idleLimit), reuseLimit_(reuseLimit) {}
    ~ConnectionPool() { closeAll(); }
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    bool enabled() const { return idleLimit_.count() > 0; }
    Millis reuseLimit() const { return reuseLimit_; }

    // The most recently parked idle connection for `key` still within both limits (its
    // opening time in `opened`), or nullptr. The caller still has to RSET it. Expired
    // connections met on the way are closed. nullptr after shutdown (abortAll/closeAll).
    std::unique_ptr<SmtpClient> take(const std::string& key, Clock::time_point& opened);
    // Keeps a usable connection idle; closes it (QUIT) instead when the pool is off or shut
    // down, or the connection is unusable or past the reuse limit. True when the pool had
    // no idle connection the sweeper knew of: it must be told (QueueRunner's scanner).
    bool park(const std::string& key, std::unique_ptr<SmtpClient> client, Clock::time_point opened);
    // Closes (QUIT) the idle connections past a limit. Returns when the next one expires
    // (nullopt: the pool is empty; the next park() returns true).
    std::optional<Clock::time_point> sweep();
    // Shutdown: from now on park() closes; abortAll() cuts the idle sockets (shutdown(2)),
    // closeAll() closes them.
    void abortAll();
    void closeAll();

    std::size_t idleCount() const;

private:
    struct Idle {
        std::unique_ptr<SmtpClient> client;
        Clock::time_point opened;
        Clock::time_point idleSince;
    };
    Clock::time_point expiry(const Idle& idle) const {
        return std::min(idle.idleSince + idleLimit_, idle.opened + reuseLimit_);
    }

    const Millis idleLimit_;
    const Millis reuseLimit_;
    mutable std::mutex mutex_;
    std::multimap<std::string, Idle> idle_;
    bool armed_ = false;   // the sweeper knows there is something to expire
    bool closed_ = false;  // shut down: park() closes
};

}  // namespace postern::delivery
