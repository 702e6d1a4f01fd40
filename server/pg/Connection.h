// RAII owner of one libpq connection: connect with Postern's timeouts, run simple, parameterised
// and prepared statements (each prepared once per connection), tell a broken connection.
#pragma once

#include "pg/ConnectSettings.h"
#include "pg/QueryResult.h"

#include <libpq-fe.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

namespace postern::pg {

// A named statement; the pool prepares it once on each connection that runs it. Parameters
// are always bound ($1, $2 ...), never spliced into the text.
struct Statement {
    std::string name;  // unique per pool, e.g. "postern_password"
    std::string sql;
};

class Connection;
using ConnectionPtr = std::unique_ptr<Connection>;

// One PGconn (PQfinish on destruction). Not thread-safe: one thread at a time (the pool hands
// a connection to one caller).
//
// Every call is bounded on the client side, because statement_timeout is applied by the
// server and a frozen server (SIGSTOP, a stuck host, a network black hole) applies nothing:
//  - connect: libpq's connect_timeout, which covers the whole attempt per host (TCP, TLS, the
//    startup packet and authentication), so a server whose kernel accepts the connection but
//    never answers is given up after connect_timeout (per listed host);
//  - statements: libpq in non-blocking mode (PQsend* + PQflush + PQconsumeInput/PQisBusy +
//    poll() on PQsocket) with a deadline of statement_timeout + ClientDeadlineGrace per call
//    (a call = one exec/execParams/execPrepared, including its PREPARE). The grace lets a live
//    server's own statement_timeout error (57014, connection kept) arrive first; past it the
//    server is taken as not answering: the call returns Error with timedOut set and SQLSTATE
//    57014, the socket is closed at once (PQfinish without waiting) and every later call on
//    this connection fails at once, so the pool discards it. No PQcancel: on a live server
//    statement_timeout (the same value, set on every connection) has already ended the query,
//    and on a frozen one libpq 15's PQcancel would itself block without a timeout.
//  - TCP keepalives and tcp_user_timeout (see open()) find a dead peer of an idle pooled
//    connection, and bound unacknowledged writes.
// statement_timeout = 0 switches both the server's and the client's deadline off.
class Connection {
public:
    // Added to statement_timeout for the client-side deadline of a call (see above).
    static constexpr std::chrono::milliseconds ClientDeadlineGrace{500};

    // Connects (conninfo passed to libpq unchanged, plus connect_timeout, client_encoding=UTF8,
    // fallback_application_name and the password file's password; TCP keepalives and
    // tcp_user_timeout unless the conninfo sets them) and sets statement_timeout.
    // Returns nullptr and fills error (one line, no password) if that fails.
    static ConnectionPtr open(const ConnectSettings& settings, std::string& error);

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    // CONNECTION_OK: usable as far as libpq knows (a dead peer shows on the next query).
    // False once a call hit the client-side deadline.
    bool isOk() const;

    // A call hit the client-side deadline: the connection is closed for good.
    bool timedOut() const { return timedOut_; }

    // The client-side deadline of one call (statement_timeout + grace; 0 = none).
    std::chrono::milliseconds callTimeout() const { return callTimeout_; }

    // No transaction open or aborted on this connection (safe to hand to the next caller).
    bool isIdle() const;

    // Simple protocol, may hold several statements. Only for trusted text (migrations,
    // BEGIN/COMMIT): it takes no parameters.
    QueryResult exec(const std::string& sql);

    // Unnamed parameterised statement (PQexecParams), for one-off admin statements.
    QueryResult execParams(const std::string& sql, const Params& params);

    // PQprepare once on this connection, then PQexecPrepared with bound text parameters.
    QueryResult execPrepared(const Statement& statement, const Params& params);

    // True if this error means the connection cannot be used any more: libpq says it is
    // gone, there was no server answer, SQLSTATE class 08 (connection exception), 57P01-03
    // (server shutting down / crash recovery / cannot connect now) or 25006 (a read-only
    // server: after a failover the old primary; reconnecting lets target_session_attrs
    // find the new one). The pool replaces such a connection and retries once.
    // A call that hit the client-side deadline (result.timedOut) is NOT broken in this sense:
    // the connection is gone (isOk() is false), but a retry would only double the wait on a
    // server that does not answer.
    bool isBroken(const QueryResult& result) const;

    // Server host:port this connection reached (for logs).
    std::string peer() const;

    // The value libpq uses for a connection option (PQconninfo), "" if unset or closed.
    std::string option(const std::string& keyword) const;

private:
    using Clock = std::chrono::steady_clock;

    explicit Connection(PGconn* conn) : conn_(conn) {}

    // The end of a call started now (time_point::max() when there is no deadline).
    Clock::time_point deadlineFromNow() const;
    // Sends one request with send (a PQsend* call returning 1 on success), then collects its
    // results until libpq has no more, or until `until`. The first error result wins, else
    // the last result (PQexec's rule).
    QueryResult run(const std::function<int(PGconn*)>& send, Clock::time_point until);
    // Waits until the socket is ready for events or until; false on timeout or poll error.
    bool waitSocket(short events, Clock::time_point until, bool& timedOut);
    // The deadline passed: close at once, fail every later call.
    QueryResult abandon();

    struct Finish {
        void operator()(PGconn* c) const { PQfinish(c); }
    };
    std::unique_ptr<PGconn, Finish> conn_;
    std::set<std::string> prepared_;  // statement names prepared on this connection
    std::chrono::milliseconds callTimeout_{0};
    bool timedOut_ = false;
};

}  // namespace postern::pg
