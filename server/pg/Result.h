// RAII owner of a libpq PGresult, and its conversion into a QueryResult.
#pragma once

#include "pg/QueryResult.h"

#include <libpq-fe.h>

#include <memory>

namespace postern::pg {

// Owns one PGresult (PQclear on destruction). Move-only. Not thread-safe (one per call).
class Result {
public:
    Result() = default;
    explicit Result(PGresult* result) : result_(result) {}

    PGresult* get() const { return result_.get(); }
    explicit operator bool() const { return result_ != nullptr; }

    // PGRES_COMMAND_OK / PGRES_TUPLES_OK -> Ok or NoRows with the rows copied out;
    // anything else (including a null result) -> Error with SQLSTATE and the server's
    // primary message. conn supplies the message when there is no result.
    QueryResult toQueryResult(PGconn* conn) const;

private:
    struct Clear {
        void operator()(PGresult* r) const { PQclear(r); }
    };
    std::unique_ptr<PGresult, Clear> result_;
};

}  // namespace postern::pg
