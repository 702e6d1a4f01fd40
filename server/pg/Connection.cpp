// RAII owner of one libpq connection.
#include "pg/Connection.h"

#include "pg/Result.h"

#include <poll.h>

#include <cerrno>
#include <vector>

namespace postern::pg {

namespace {

std::string oneLine(const char* text) {
    std::string s = text ? text : "";
    for (auto& c : s) {
        if (c == '\n' || c == '\r' || c == '\t') {
            c = ' ';
        }
    }
    while (!s.empty() && s.back() == ' ') {
        s.pop_back();
    }
    return s;
}

// Parameters as libpq wants them: NUL-terminated text or NULL. libpq takes C strings, so a
// value with an embedded NUL cannot be bound faithfully: refuse it rather than truncate.
bool toCParams(const Params& params, std::vector<const char*>& out) {
    out.clear();
    out.reserve(params.size());
    for (const auto& p : params) {
        if (p && p->find('\0') != std::string::npos) {
            return false;
        }
        out.push_back(p ? p->c_str() : nullptr);
    }
    return true;
}

}  // namespace

ConnectionPtr Connection::open(const ConnectSettings& s, std::string& error) {
    // libpq counts whole seconds and treats 1 as 2; round up so "500ms" still means "short".
    const long long secs = (s.connectTimeout.count() + 999) / 1000;
    const std::string connectTimeout = std::to_string(secs < 1 ? 1 : secs);
    // Entries are applied in order and the expanded conninfo (dbname) overrides what comes
    // before it: the TCP settings first, so an operator's conninfo can still set its own.
    // Keepalives find the dead peer of an idle pooled connection (a crashed host, a NAT that
    // forgot the flow) within idle + interval * count = 60 s; tcp_user_timeout bounds how
    // long sent data may stay unacknowledged (both ignored on unix sockets).
    std::vector<const char*> keys{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                  "tcp_user_timeout"};
    std::vector<const char*> values{"1", "30", "10", "3", "30000"};
    // Later entries override what the expanded conninfo says: the config keys are the
    // authority for timeouts and the password file; everything else is libpq's as given.
    keys.insert(keys.end(), {"dbname", "connect_timeout", "client_encoding", "fallback_application_name"});
    values.insert(values.end(), {s.conninfo.c_str(), connectTimeout.c_str(), "UTF8", s.applicationName.c_str()});
    if (!s.password.empty()) {
        keys.push_back("password");
        values.push_back(s.password.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

    // Blocking connect: connect_timeout bounds each host's whole attempt (see the header);
    // PQconnectPoll would ignore it and lose the per-host failover of a multi-host conninfo.
    PGconn* raw = PQconnectdbParams(keys.data(), values.data(), 1);
    if (raw == nullptr) {
        error = "out of memory";
        return nullptr;
    }
    ConnectionPtr c(new Connection(raw));
    // libpq prints NOTICEs to stderr by default; the daemon's stderr is its log.
    PQsetNoticeProcessor(raw, [](void*, const char*) {}, nullptr);
    if (PQstatus(raw) != CONNECTION_OK) {
        error = oneLine(PQerrorMessage(raw));
        if (error.empty()) {
            error = "cannot connect";
        }
        return nullptr;
    }
    // From here every call waits in poll() with a deadline, never inside libpq.
    if (PQsetnonblocking(raw, 1) != 0) {
        error = "cannot switch the connection to non-blocking mode: " + oneLine(PQerrorMessage(raw));
        return nullptr;
    }
    if (s.statementTimeout.count() > 0) {
        c->callTimeout_ = s.statementTimeout + ClientDeadlineGrace;
        // A number, not client text: nothing to bind.
        QueryResult r = c->exec("SET statement_timeout = " + std::to_string(s.statementTimeout.count()));
        if (r.failed()) {
            error = "SET statement_timeout: " + r.error;
            return nullptr;
        }
    }
    return c;
}

Connection::~Connection() = default;

bool Connection::isOk() const {
    return conn_ && !timedOut_ && PQstatus(conn_.get()) == CONNECTION_OK;
}

bool Connection::isIdle() const {
    return isOk() && PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
}

std::string Connection::peer() const {
    if (!conn_) {
        return "-";
    }
    const char* host = PQhost(conn_.get());
    const char* port = PQport(conn_.get());
    return std::string(host ? host : "?") + ":" + (port ? port : "?");
}

std::string Connection::option(const std::string& keyword) const {
    if (!conn_) {
        return {};
    }
    std::string value;
    PQconninfoOption* opts = PQconninfo(conn_.get());
    for (auto* o = opts; o && o->keyword; ++o) {
        if (keyword == o->keyword && o->val) {
            value = o->val;
        }
    }
    PQconninfoFree(opts);
    return value;
}

Connection::Clock::time_point Connection::deadlineFromNow() const {
    return callTimeout_.count() > 0 ? Clock::now() + callTimeout_ : Clock::time_point::max();
}

bool Connection::waitSocket(short events, Clock::time_point until, bool& timedOut) {
    timedOut = false;
    const int fd = PQsocket(conn_.get());
    if (fd < 0) {
        return false;
    }
    for (;;) {
        int ms = -1;
        if (until != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
            if (left <= 0) {
                timedOut = true;
                return false;
            }
            ms = left > 60'000 ? 60'000 : static_cast<int>(left);
        }
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, ms);
        if (n > 0) {
            return true;  // ready, or an error/hang-up libpq will report when it reads
        }
        if (n < 0 && errno != EINTR) {
            return false;
        }
        // Timeout of this slice or EINTR: loop, the deadline is checked above.
    }
}

QueryResult Connection::abandon() {
    const long long ms = callTimeout_.count();
    timedOut_ = true;
    prepared_.clear();
    // Non-blocking mode: PQfinish's Terminate message is written only if the socket takes it
    // at once, so closing never waits on the server.
    conn_.reset();
    QueryResult r = QueryResult::failure(
        "no answer from the server within " + std::to_string(ms) + "ms (client deadline); connection closed", "57014");
    r.timedOut = true;
    return r;
}

QueryResult Connection::run(const std::function<int(PGconn*)>& send, Clock::time_point until) {
    if (!conn_) {
        return QueryResult::failure(timedOut_ ? "connection closed after a client deadline" : "no connection",
                                    "08003");
    }
    PGconn* c = conn_.get();
    if (send(c) != 1) {
        return Result().toQueryResult(c);
    }
    bool expired = false;
    // Push the request out; the server may need us to read before it can take more.
    for (;;) {
        const int f = PQflush(c);
        if (f == 0) {
            break;
        }
        if (f < 0 || !waitSocket(POLLIN | POLLOUT, until, expired)) {
            return expired ? abandon() : Result().toQueryResult(c);
        }
        if (PQconsumeInput(c) == 0) {
            return Result().toQueryResult(c);
        }
    }
    Result first;  // the first error result, else the last result
    bool haveError = false;
    for (;;) {
        while (!PQisBusy(c)) {
            PGresult* raw = PQgetResult(c);
            if (raw == nullptr) {
                return first.toQueryResult(c);
            }
            Result r(raw);
            const ExecStatusType st = PQresultStatus(raw);
            if (!haveError) {
                haveError = st == PGRES_FATAL_ERROR;
                first = std::move(r);
            }
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH ||
                PQstatus(c) == CONNECTION_BAD) {
                return first.toQueryResult(c);  // nothing more will come the normal way
            }
        }
        if (!waitSocket(POLLIN, until, expired)) {
            return expired ? abandon() : Result().toQueryResult(c);
        }
        if (PQconsumeInput(c) == 0) {
            // The connection broke: libpq may still hand out what it has, else its message.
            if (PQisBusy(c)) {
                return haveError ? first.toQueryResult(c) : Result().toQueryResult(c);
            }
        }
    }
}

QueryResult Connection::exec(const std::string& sql) {
    return run([&](PGconn* c) { return PQsendQuery(c, sql.c_str()); }, deadlineFromNow());
}

QueryResult Connection::execParams(const std::string& sql, const Params& params) {
    std::vector<const char*> values;
    if (!toCParams(params, values)) {
        return QueryResult::failure("parameter contains a NUL byte", "22021");
    }
    return run(
        [&](PGconn* c) {
            return PQsendQueryParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                                     nullptr, 0);
        },
        deadlineFromNow());
}

QueryResult Connection::execPrepared(const Statement& st, const Params& params) {
    std::vector<const char*> values;
    if (!toCParams(params, values)) {
        return QueryResult::failure("parameter contains a NUL byte", "22021");
    }
    // One deadline for the call, PREPARE included: a caller waits at most callTimeout().
    const Clock::time_point until = deadlineFromNow();
    if (prepared_.count(st.name) == 0) {
        QueryResult pr =
            run([&](PGconn* c) { return PQsendPrepare(c, st.name.c_str(), st.sql.c_str(), 0, nullptr); }, until);
        if (pr.failed()) {
            pr.error = "prepare " + st.name + ": " + pr.error;
            return pr;
        }
        prepared_.insert(st.name);
    }
    QueryResult q = run(
        [&](PGconn* c) {
            return PQsendQueryPrepared(c, st.name.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                                       nullptr, 0);
        },
        until);
    if (q.sqlState == "26000") {
        // The server forgot the statement (DISCARD ALL, a pooler in between): prepare again
        // next time rather than failing on this connection forever.
        prepared_.erase(st.name);
    }
    return q;
}

bool Connection::isBroken(const QueryResult& r) const {
    if (!r.failed() || r.timedOut) {
        return false;
    }
    if (!isOk()) {
        return true;
    }
    const std::string& s = r.sqlState;
    return s.empty() || s.rfind("08", 0) == 0 || s == "57P01" || s == "57P02" || s == "57P03" ||
           s == "25006";
}

}  // namespace postern::pg
