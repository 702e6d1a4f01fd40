// Outbound rate counters shared by every node of a cluster through PostgreSQL
// (table rate_counters, schema/postgres/002_cluster.sql).
#pragma once

#include "abuse/RateStore.h"
#include "pg/Pool.h"

#include <cstddef>
#include <optional>

namespace postern::abuse {

// Same semantics as MemoryRateStore (see RateStore): counts live in 5-minute rows per key;
// "last hour" sums the 13 newest 5-minute buckets and "last day" the 25 newest hour buckets,
// exactly the buckets SlidingWindow counts, so the limits hold in every hour and day.
//
// tryAdd() is one transaction around ONE statement, the server-side function
// postern_rate_take (schema/postgres/005_round_trips.sql): a transaction advisory lock per
// distinct key, taken in one fixed order (so two nodes checking overlapping keys queue, never
// deadlock); read the sums; compare as MemoryRateStore does (amounts of one key add up within
// a request); then either nothing (Limited; rolled back) or add every amount (Added; COMMIT).
// The explicit BEGIN/COMMIT (not counted as statements) keep the retry safe: any failure
// before COMMIT is rolled back, TempFail with nothing added, and a connection lost before
// COMMIT was sent is retried once on a fresh one. If it is lost during COMMIT the outcome is
// unknown: TempFail ("nothing is known to be added"), as RateStore allows.
//
// Instants are the caller's `now` (see PgPenaltyStore). Thread-safe; the pool must outlive
// this.
class PgRateStore : public RateStore {
public:
    explicit PgRateStore(pg::Pool& pool);

    RateStoreResult tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) override;
    std::optional<RateCounts> get(const std::string& key, core::TimePoint now) override;

    // Deletes rows that count for nothing at `now` (older than 25 hours) in batches (FOR
    // UPDATE SKIP LOCKED: safe on every node at once). Rows deleted, or nullopt on failure.
    std::optional<std::size_t> sweep(core::TimePoint now, std::size_t batch = 1000);

private:
    pg::Pool& pool_;
};

}  // namespace postern::abuse
