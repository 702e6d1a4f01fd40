// A fixed-size, thread-safe pool of PostgreSQL connections that replaces broken ones.
#pragma once

#include "pg/Connection.h"
#include "pg/ConnectSettings.h"
#include "pg/QueryResult.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace postern::pg {

// Holds up to settings.poolSize connections, opened lazily on first use (start-up never
// waits for the database). A caller borrows one connection for one statement:
//
//  - no free connection within connect_timeout            -> Error (pool exhausted)
//  - the slot's connection is missing or not CONNECTION_OK -> reconnect; failure -> Error
//  - the statement fails with Connection::isBroken()      -> the connection is replaced and
//    the statement retried once on the new one (a server restart, failover or idle cut costs
//    the caller nothing); a second failure -> Error
//  - no answer within the client-side deadline (Connection: statement_timeout + grace) ->
//    Error with timedOut (SQLSTATE 57014); the connection is discarded, never returned to
//    the pool, and the statement is NOT retried
//  - while the database is down (the last attempt failed to connect, broke or timed out),
//    one caller at a time, and at most one per connect_timeout, tries to reach it; every
//    other caller gets Error at once (SQLSTATE 08006) instead of waiting out its own
//    timeout. A session making several calls, or many sessions, thus do not each pay the
//    full timeout during an outage; the first call that gets through again ends it.
//
// So while PostgreSQL is unreachable every call returns Error within about connect_timeout,
// while it is frozen (accepts TCP, never answers) within connect_timeout (waiting for a
// slot) plus connect_timeout (a new connection) or the statement deadline (an open one),
// and the first call after it is back succeeds: no restart needed. Up/down transitions are
// logged once each on "postern.pg" (never the password or the parameters).
//
// Thread-safe: slots are handed out under a mutex; statements run outside it. Retrying is
// right for reads and idempotent writes; a caller with a non-idempotent write that must not
// run twice uses withConnection() (no retry).
class Pool {
public:
    explicit Pool(ConnectSettings settings);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // Runs a prepared statement with bound parameters (see the class comment for outcomes).
    QueryResult execute(const Statement& statement, const Params& params);

    // Runs fn with one live connection (no retry); for transactions. If no connection can be
    // had, returns that Error without calling fn. If fn leaves the connection broken, it is
    // dropped.
    QueryResult withConnection(const std::function<QueryResult(Connection&)>& fn);

    // Called (on the calling thread, after the statement) each time a call reaches the
    // database after it was down. Must not block. Thread-safe.
    void setUpListener(std::function<void()> listener);

    std::size_t size() const { return slots_.size(); }
    // Connections currently open (for tests and metrics).
    std::size_t openConnections() const;

private:
    using Clock = std::chrono::steady_clock;

    // False: the database is down and this caller is not the one to try it now.
    bool admit(bool& probe);
    void endProbe(bool probe);
    std::size_t acquire();  // slot index, or size() on timeout
    void release(std::size_t slot);
    bool ensureConnected(std::size_t slot, std::string& error);
    void noteDown(const std::string& why);
    void noteUp(const Connection& c);

    const ConnectSettings settings_;
    mutable std::mutex mutex_;
    std::condition_variable available_;
    std::vector<ConnectionPtr> slots_;  // a slot is touched only by the thread that holds it
    std::vector<std::size_t> free_;     // guarded by mutex_
    std::atomic<bool> down_{false};
    std::mutex listenerMutex_;
    std::function<void()> upListener_;  // under listenerMutex_
    Clock::time_point retryAt_{};  // guarded by mutex_: while down, no try before this
    bool probing_ = false;         // guarded by mutex_: a caller is trying the database now
};

}  // namespace postern::pg
