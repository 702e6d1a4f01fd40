// RAII owner of one libpq connection: connect with Postern's timeouts, run simple, parameterised
// and prepared statements (each prepared once per connection), tell a broken connection.
#pragma once

#include "pg/ConnectSettings.h"
#include "pg/QueryResult.h"

#include <libpq-fe.h>

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
// a connection to one caller). Blocking calls, bounded by connect_timeout / statement_timeout.
class Connection {
public:
    // Connects (conninfo passed to libpq unchanged, plus connect_timeout, client_encoding=UTF8,
    // fallback_application_name and the password file's password) and sets statement_timeout.
    // Returns nullptr and fills error (one line, no password) if that fails.
    static ConnectionPtr open(const ConnectSettings& settings, std::string& error);

    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    // CONNECTION_OK: usable as far as libpq knows (a dead peer shows on the next query).
    bool isOk() const;

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
    bool isBroken(const QueryResult& result) const;

    // Server host:port this connection reached (for logs).
    std::string peer() const;

private:
    explicit Connection(PGconn* conn) : conn_(conn) {}

    struct Finish {
        void operator()(PGconn* c) const { PQfinish(c); }
    };
    std::unique_ptr<PGconn, Finish> conn_;
    std::set<std::string> prepared_;  // statement names prepared on this connection
};

}  // namespace postern::pg
