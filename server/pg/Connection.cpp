// RAII owner of one libpq connection.
#include "pg/Connection.h"

#include "pg/Result.h"


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
    // Later entries override what the expanded conninfo says: the config keys are the
    // authority for timeouts and the password file; everything else is libpq's as given.
    std::vector<const char*> keys{"dbname", "connect_timeout", "client_encoding", "fallback_application_name"};
    std::vector<const char*> values{s.conninfo.c_str(), connectTimeout.c_str(), "UTF8", s.applicationName.c_str()};
    if (!s.password.empty()) {
        keys.push_back("password");
        values.push_back(s.password.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

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
    if (s.statementTimeout.count() > 0) {
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
    return conn_ && PQstatus(conn_.get()) == CONNECTION_OK;
}

bool Connection::isIdle() const {
    return conn_ && PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
}

std::string Connection::peer() const {
    if (!conn_) {
        return "-";
    }
    const char* host = PQhost(conn_.get());
    const char* port = PQport(conn_.get());
    return std::string(host ? host : "?") + ":" + (port ? port : "?");
}

QueryResult Connection::exec(const std::string& sql) {
    Result r(PQexec(conn_.get(), sql.c_str()));
    return r.toQueryResult(conn_.get());
}

QueryResult Connection::execParams(const std::string& sql, const Params& params) {
    std::vector<const char*> values;
    if (!toCParams(params, values)) {
        return QueryResult::failure("parameter contains a NUL byte", "22021");
    }
    Result r(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0));
    return r.toQueryResult(conn_.get());
}

QueryResult Connection::execPrepared(const Statement& st, const Params& params) {
    std::vector<const char*> values;
    if (!toCParams(params, values)) {
        return QueryResult::failure("parameter contains a NUL byte", "22021");
    }
    if (prepared_.count(st.name) == 0) {
        Result p(PQprepare(conn_.get(), st.name.c_str(), st.sql.c_str(), 0, nullptr));
        QueryResult pr = p.toQueryResult(conn_.get());
        if (pr.failed()) {
            pr.error = "prepare " + st.name + ": " + pr.error;
            return pr;
        }
        prepared_.insert(st.name);
    }
    Result r(PQexecPrepared(conn_.get(), st.name.c_str(), static_cast<int>(values.size()),
                            values.data(), nullptr, nullptr, 0));
    QueryResult q = r.toQueryResult(conn_.get());
    if (q.sqlState == "26000") {
        // The server forgot the statement (DISCARD ALL, a pooler in between): prepare again
        // next time rather than failing on this connection forever.
        prepared_.erase(st.name);
    }
    return q;
}

bool Connection::isBroken(const QueryResult& r) const {
    if (!r.failed()) {
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
