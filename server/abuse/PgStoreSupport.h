// What the abuse stores in PostgreSQL (PgPenaltyStore, PgRateStore, PgAccountSecurityStore)
// share: the warning line of a failed statement, a statement whose only answer is whether it
// ran, and the batched sweep of expired rows.
#pragma once

#include "pg/Pool.h"

#include <cstddef>
#include <optional>
#include <string>

namespace postern::abuse {

// One warning on postern.abuse: "event=<event> op=<op> store=postgres error=...", e.g.
// event penalty.store_fail, rate.store_fail, account_security.store_fail.
void logStoreFailure(const char* event, const char* op, const std::string& error);
// The statement's error, or "unexpected result" when it ran but answered something else.
void logStoreFailure(const char* event, const char* op, const pg::QueryResult& r);

// Runs the statement; false (logged as above) when it failed.
bool executeLogged(pg::Pool& pool, const pg::Statement& statement, const pg::Params& params, const char* event,
                   const char* op);

// Runs `statement` ($1 = cutoff, $2 = batch size) until a round deletes fewer than `batch`
// rows, at most 100 rounds (batch 0 means 1000). Returns how many rows it deleted, nullopt on
// failure (logged with op "sweep").
std::optional<std::size_t> sweepInBatches(pg::Pool& pool, const pg::Statement& statement, const std::string& cutoff,
                                          std::size_t batch, const char* event);

}  // namespace postern::abuse
