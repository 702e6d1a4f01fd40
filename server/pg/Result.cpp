// RAII owner of a libpq PGresult, and its conversion into a QueryResult.
#include "pg/Result.h"

#include <cstdlib>

namespace postern::pg {

namespace {

// libpq messages end with a newline and may span lines; the log wants one line.
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

}  // namespace

QueryResult Result::toQueryResult(PGconn* conn) const {
    QueryResult q;
    if (!result_) {
        q.error = conn ? oneLine(PQerrorMessage(conn)) : "no result";
        if (q.error.empty()) {
            q.error = "no result from the server";
        }
        return q;
    }
    PGresult* r = result_.get();
    switch (PQresultStatus(r)) {
    case PGRES_COMMAND_OK: {
        const char* affected = PQcmdTuples(r);
        q.affectedRows = (affected && *affected) ? std::strtoull(affected, nullptr, 10) : 0;
        q.status = q.affectedRows > 0 ? QueryStatus::Ok : QueryStatus::NoRows;
        return q;
    }
    case PGRES_TUPLES_OK: {
        const int nRows = PQntuples(r);
        const int nCols = PQnfields(r);
        q.columns.reserve(static_cast<std::size_t>(nCols));
        for (int c = 0; c < nCols; ++c) {
            q.columns.emplace_back(PQfname(r, c));
        }
        q.rows.reserve(static_cast<std::size_t>(nRows));
        for (int i = 0; i < nRows; ++i) {
            Row row;
            row.reserve(static_cast<std::size_t>(nCols));
            for (int c = 0; c < nCols; ++c) {
                if (PQgetisnull(r, i, c)) {
                    row.emplace_back(std::nullopt);
                } else {
                    row.emplace_back(std::string(PQgetvalue(r, i, c), static_cast<std::size_t>(PQgetlength(r, i, c))));
                }
            }
            q.rows.push_back(std::move(row));
        }
        const char* affected = PQcmdTuples(r);
        q.affectedRows = (affected && *affected) ? std::strtoull(affected, nullptr, 10) : q.rows.size();
        q.status = (nRows > 0 || q.affectedRows > 0) ? QueryStatus::Ok : QueryStatus::NoRows;
        return q;
    }
    default: {
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        q.sqlState = state ? state : "";
        const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        q.error = oneLine(primary ? primary : PQresultErrorMessage(r));
        if (q.error.empty() && conn) {
            q.error = oneLine(PQerrorMessage(conn));
        }
        return q;
    }
    }
}

}  // namespace postern::pg
