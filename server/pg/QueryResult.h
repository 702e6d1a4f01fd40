// The outcome of one PostgreSQL statement, copied out of libpq: ok (rows or affected rows),
// no rows, or an error. Callers map an error to "try later", never to "no".
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace postern::pg {

enum class QueryStatus {
    Ok,      // the query returned at least one row, or the command affected at least one
    NoRows,  // it ran and returned / affected nothing
    Error,   // it did not run: connection, timeout, SQL or constraint error (see sqlState)
};

// A value: nullopt is SQL NULL.
using Value = std::optional<std::string>;
using Row = std::vector<Value>;
using Params = std::vector<Value>;

struct QueryResult {
    QueryStatus status = QueryStatus::Error;  // fail closed: only a completed query sets more
    std::vector<std::string> columns;
    std::vector<Row> rows;
    std::size_t affectedRows = 0;  // INSERT/UPDATE/DELETE
    std::string sqlState;          // Error: five-character SQLSTATE; "" when there was no server answer
    std::string error;             // Error: one line for the log (never contains parameters)
    bool timedOut = false;         // Error: no answer within the client-side deadline (sqlState
                                   // 57014); the connection was closed, the statement not retried
    bool earlierAttemptLost = false;  // Error: the pool's first attempt was sent and its
                                      // connection lost before an answer (it may have run)

    bool ok() const { return status == QueryStatus::Ok; }
    bool noRows() const { return status == QueryStatus::NoRows; }
    bool failed() const { return status == QueryStatus::Error; }

    // Error classes worth telling apart in callers (posternctl exit codes).
    bool isUniqueViolation() const { return sqlState == "23505"; }
    bool isForeignKeyViolation() const { return sqlState == "23503"; }
    bool isCheckViolation() const { return sqlState == "23514"; }
    // The statement was cancelled: by the server's statement_timeout, or by Postern's own
    // client-side deadline when the server did not answer at all (timedOut).
    bool isTimeout() const { return sqlState == "57014"; }

    // Whether the statement may have run (and committed): it did, or some attempt was sent
    // and no answer came (a client deadline, a connection lost mid-statement: libpq's own
    // errors carry no SQLSTATE). A refusal by the pool (08000, 08001, 08006) never reached
    // the server, and a server error rolled back.
    bool mayHaveCommitted() const { return !failed() || timedOut || sqlState.empty() || earlierAttemptLost; }

    // An Error made without a server answer (connect failure, pool timeout, bad use).
    static QueryResult failure(std::string message, std::string state = {}) {
        QueryResult r;
        r.error = std::move(message);
        r.sqlState = std::move(state);
        return r;
    }
};

}  // namespace postern::pg
