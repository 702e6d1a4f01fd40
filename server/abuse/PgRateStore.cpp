// Outbound rate counters in PostgreSQL: 5-minute rows, all-or-nothing checks in one
// statement (postern_rate_take, schema 005) under per-key advisory locks.
#include "abuse/PgRateStore.h"

#include "abuse/PgStoreSupport.h"
#include "abuse/PgTime.h"
#include "pg/Arrays.h"

#include <algorithm>
#include <map>
#include <set>

namespace postern::abuse {

namespace {

constexpr const char* FailEvent = "rate.store_fail";

constexpr std::int64_t BucketUs = 5LL * 60 * 1000000;  // SlidingWindow's hour: 12 buckets of 5 min
constexpr std::int64_t HourUs = 60LL * 60 * 1000000;   // its day: 24 buckets of 1 hour
constexpr std::int64_t HourBuckets = 12;
constexpr std::int64_t DayBuckets = 24;
// The per-key advisory locks are taken inside postern_rate_take() (schema 005): first key
// 1918989413 ("rate" in ASCII) of the two-int lock space; the one-bigint space (the
// migrator's lock) never conflicts with it.

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

struct Cutoffs {
    std::int64_t bucket;     // start of the 5-minute bucket `now` falls in
    std::int64_t hourStart;  // oldest 5-minute bucket the hour counts
    std::int64_t dayStart;   // oldest hour bucket the day counts
};

Cutoffs cutoffs(core::TimePoint now) {
    const std::int64_t us = toPgMicros(now);
    const std::int64_t b = floorDiv(us, BucketUs);
    const std::int64_t h = floorDiv(us, HourUs);
    return {b * BucketUs, (b - HourBuckets) * BucketUs, (h - DayBuckets) * HourUs};
}

// The whole check-and-add in one statement (schema/postgres/005_round_trips.sql): per-key
// transaction advisory locks in hash order, the sums, the comparison, the add. Run inside
// BEGIN/COMMIT so a connection lost before COMMIT provably added nothing (and may be retried).
// outcome, idx, win, and each key's counts after the add (hours, days: schema 009, which
// `posternctl db migrate` applies before the nodes are upgraded; explicit columns, so a
// statement prepared on one schema never changes its result type under a later one).
const pg::Statement RateTake{
    "postern_rate_take",
    "SELECT outcome, idx, win, hours, days FROM postern_rate_take($1::text[], $2::bigint[], $3::bigint[],"
    " $4::bigint[], $5::bigint, $6::bigint, $7::bigint)"};

const pg::Statement RateSums{
    "postern_rate_sums",
    "SELECT key,"
    " COALESCE(sum(count) FILTER (WHERE bucket_start >= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'), 0),"
    " COALESCE(sum(count), 0)"
    " FROM rate_counters WHERE key = ANY ($1::text[])"
    " AND bucket_start >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond'"
    " GROUP BY key"};

const pg::Statement RateSweep{
    "postern_rate_sweep",
    "DELETE FROM rate_counters WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM rate_counters WHERE bucket_start < 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'"
    "   LIMIT $2::integer FOR UPDATE SKIP LOCKED))"};

bool parseSums(const pg::QueryResult& r, std::map<std::string, RateCounts>& out) {
    try {
        for (const auto& row : r.rows) {
            if (row.size() != 3 || !row[0] || !row[1] || !row[2])
                return false;
            out[*row[0]] = RateCounts{std::stoull(*row[1]), std::stoull(*row[2])};
        }
    } catch (const std::exception&) {
        return false;
    }
    return true;
}

}  // namespace

PgRateStore::PgRateStore(pg::Pool& pool) : pool_(pool) {}

RateStoreResult PgRateStore::tryAdd(const std::vector<RateRequest>& requests, core::TimePoint now) {
    RateStoreResult result;  // TempFail until one path says otherwise
    if (requests.empty()) {
        result.kind = RateStoreResult::Kind::Added;
        return result;
    }
    const Cutoffs cut = cutoffs(now);
    std::vector<std::string> keys;
    std::vector<std::uint64_t> amounts, perHour, perDay;
    for (const auto& r : requests) {
        keys.push_back(r.key);
        amounts.push_back(r.amount);
        perHour.push_back(r.perHour);
        perDay.push_back(r.perDay);
    }
    const std::string keyArray = pg::textArray(keys);

    for (int attempt = 0; attempt < 2; ++attempt) {
        bool retry = false;
        std::string error;
        result = RateStoreResult{};
        pool_.withConnection([&](pg::Connection& c) -> pg::QueryResult {
            // Any failure before COMMIT: roll back; retry only if the connection broke (the
            // server never saw a COMMIT, so nothing was added).
            auto fail = [&](const pg::QueryResult& r, const char* step) {
                error = std::string(step) + ": " + r.error;
                retry = c.isBroken(r);
                if (c.isOk())
                    c.exec("ROLLBACK");
                return r;
            };
            pg::QueryResult r = c.exec("BEGIN");
            if (r.failed())
                return fail(r, "begin");
            r = c.execPrepared(RateTake, {keyArray, pg::bigintArray(amounts), pg::bigintArray(perHour), pg::bigintArray(perDay),
                                          std::to_string(cut.bucket), std::to_string(cut.hourStart),
                                          std::to_string(cut.dayStart)});
            if (r.failed())
                return fail(r, "take");
            if (r.rows.size() != 1 || r.rows[0].size() != 5 || !r.rows[0][0]) {
                pg::QueryResult bad = pg::QueryResult::failure("unexpected result shape", "XX000");
                return fail(bad, "take");
            }
            const pg::Row take = r.rows[0];  // r is reused for the COMMIT
            if (*r.rows[0][0] == "limited") {
                c.exec("ROLLBACK");
                std::size_t index = 0;
                try {
                    index = static_cast<std::size_t>(std::stoul(r.rows[0][1].value_or("0")));
                } catch (const std::exception&) {
                    index = requests.size();
                }
                if (index >= requests.size()) {
                    error = "take: unexpected request index";  // rolled back above: nothing added
                    return pg::QueryResult::failure(error, "XX000");
                }
                result.kind = RateStoreResult::Kind::Limited;
                result.index = index;
                result.window = r.rows[0][2].value_or("") == "day" ? RateWindow::Day : RateWindow::Hour;
                return r;
            }
            if (*r.rows[0][0] != "added") {
                pg::QueryResult bad = pg::QueryResult::failure("unexpected outcome " + *r.rows[0][0], "XX000");
                return fail(bad, "take");
            }
            r = c.exec("COMMIT");
            if (r.failed()) {
                // Lost during COMMIT: maybe added, maybe not. Never retried (could double).
                error = "commit: " + r.error;
                return r;
            }
            result.kind = RateStoreResult::Kind::Added;
            if (take[3] && take[4]) {
                auto hours = pg::parseBigintArray(*take[3]);
                auto days = pg::parseBigintArray(*take[4]);
                if (hours && days && hours->size() == requests.size() && days->size() == requests.size())
                    for (std::size_t i = 0; i < requests.size(); ++i) result.counts.push_back(RateCounts{(*hours)[i], (*days)[i]});
            }
            return r;
        });
        if (result.kind != RateStoreResult::Kind::TempFail)
            return result;
        if (error.empty())
            error = "no database connection";
        if (!retry || attempt == 1) {
            logStoreFailure(FailEvent, "try_add", error);
            return result;
        }
    }
    return result;
}

std::optional<RateCounts> PgRateStore::get(const std::string& key, core::TimePoint now) {
    const Cutoffs cut = cutoffs(now);
    pg::QueryResult r = pool_.execute(RateSums, {pg::textArray({key}), std::to_string(cut.hourStart),
                                                 std::to_string(cut.dayStart)});
    std::map<std::string, RateCounts> sums;
    if (r.failed() || !parseSums(r, sums)) {
        logStoreFailure(FailEvent, "get", r.failed() ? r.error : "unexpected result shape");
        return std::nullopt;
    }
    auto it = sums.find(key);
    return it == sums.end() ? RateCounts{} : it->second;
}

std::optional<std::size_t> PgRateStore::sweep(core::TimePoint now, std::size_t batch) {
    // Older than (start of this hour - 24 h) counts for nothing; one bucket of slack more.
    const std::int64_t cutoff = cutoffs(now).dayStart - HourUs;
    return sweepInBatches(pool_, RateSweep, std::to_string(cutoff), batch, FailEvent);
}

}  // namespace postern::abuse
