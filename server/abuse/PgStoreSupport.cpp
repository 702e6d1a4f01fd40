#include "abuse/PgStoreSupport.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

namespace postern::abuse {

void logStoreFailure(const char* event, const char* op, const std::string& error) {
    Poco::Logger::get("postern.abuse")
        .warning(core::EventLine(event).add("op", op).add("store", "postgres").text("error", error).str());
}

void logStoreFailure(const char* event, const char* op, const pg::QueryResult& r) {
    logStoreFailure(event, op, r.failed() ? r.error : std::string("unexpected result"));
}

bool executeLogged(pg::Pool& pool, const pg::Statement& statement, const pg::Params& params, const char* event,
                   const char* op) {
    pg::QueryResult r = pool.execute(statement, params);
    if (r.failed()) {
        logStoreFailure(event, op, r);
        return false;
    }
    return true;
}

std::optional<std::size_t> sweepInBatches(pg::Pool& pool, const pg::Statement& statement, const std::string& cutoff,
                                          std::size_t batch, const char* event) {
    if (batch == 0)
        batch = 1000;
    std::size_t removed = 0;
    for (int round = 0; round < 100; ++round) {
        pg::QueryResult r = pool.execute(statement, {cutoff, std::to_string(batch)});
        if (r.failed()) {
            logStoreFailure(event, "sweep", r.error);
            return std::nullopt;
        }
        removed += r.affectedRows;
        if (r.affectedRows < batch)
            break;
    }
    return removed;
}

}  // namespace postern::abuse
