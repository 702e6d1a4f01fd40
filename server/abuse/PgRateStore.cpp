// Outbound rate counters in PostgreSQL: 5-minute rows, all-or-nothing checks in one
// transaction under per-key advisory locks.
#include "abuse/PgRateStore.h"

#include "abuse/PgTime.h"
#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <map>
#include <set>

namespace postern::abuse {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.abuse"); }

constexpr std::int64_t BucketUs = 5LL * 60 * 1000000;  // SlidingWindow's hour: 12 buckets of 5 min
constexpr std::int64_t HourUs = 60LL * 60 * 1000000;   // its day: 24 buckets of 1 hour
constexpr std::int64_t HourBuckets = 12;
constexpr std::int64_t DayBuckets = 24;
// First key of the two-int advisory lock space used for rate keys ("rate" in ASCII); the
// one-bigint space (the migrator's lock) never conflicts with it.
constexpr const char* LockClass = "1918989413";

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

// A text[] literal: every element double-quoted, '\' and '"' escaped (bound as a parameter,
// so this is array syntax, not SQL quoting).
std::string textArray(const std::vector<std::string>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) {
        out += i ? ",\"" : "\"";
        for (char c : items[i]) {
            if (c == '\\' || c == '"')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

std::string bigintArray(const std::vector<std::uint64_t>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i)
        out += (i ? "," : "") + std::to_string(items[i]);
    return out + "}";
}

// Locks are taken in hash order inside a non-flattened sorted subquery, so every
// transaction takes them in the same order. Held until COMMIT/ROLLBACK.
const pg::Statement RateLock{
    "postern_rate_lock",
    std::string("SELECT count(pg_advisory_xact_lock(") + LockClass + ", h) ) FROM"
    " (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS t(k) ORDER BY h OFFSET 0) s"};

const pg::Statement RateSums{
    "postern_rate_sums",
    "SELECT key,"
    " COALESCE(sum(count) FILTER (WHERE bucket_start >= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'), 0),"
    " COALESCE(sum(count), 0)"
    " FROM rate_counters WHERE key = ANY ($1::text[])"
    " AND bucket_start >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond'"
    " GROUP BY key"};

// One row per key (amounts of a key summed: ON CONFLICT may touch a row only once).
const pg::Statement RateAdd{
    "postern_rate_add",
    "INSERT INTO rate_counters AS c (key, bucket_start, count)"
    " SELECT k, 'epoch'::timestamptz + $3::bigint * interval '1 microsecond', sum(a)"
    " FROM unnest($1::text[], $2::bigint[]) AS t(k, a) GROUP BY k"
    " ON CONFLICT (key, bucket_start) DO UPDATE SET count = c.count + EXCLUDED.count"};

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

void logFailure(const char* what, const std::string& error) {
    logger().warning(
        core::EventLine("rate.store_fail").add("op", what).add("store", "postgres").text("error", error).str());
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
    std::vector<std::uint64_t> amounts;
    for (const auto& r : requests) {
        keys.push_back(r.key);
        amounts.push_back(r.amount);
    }
    const std::string keyArray = textArray(keys);

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
            r = c.execPrepared(RateLock, {keyArray});
            if (r.failed())
                return fail(r, "lock");
            r = c.execPrepared(RateSums, {keyArray, std::to_string(cut.hourStart), std::to_string(cut.dayStart)});
            std::map<std::string, RateCounts> sums;
            if (r.failed())
                return fail(r, "read");
            if (!parseSums(r, sums)) {
                pg::QueryResult bad = pg::QueryResult::failure("unexpected result shape", "XX000");
                return fail(bad, "read");
            }
            // The memory store's check, request by request.
            for (std::size_t i = 0; i < requests.size(); ++i) {
                const RateRequest& q = requests[i];
                std::uint64_t amount = 0;
                for (std::size_t j = 0; j <= i; ++j)
                    if (requests[j].key == q.key)
                        amount += requests[j].amount;
                const RateCounts have = sums.count(q.key) ? sums[q.key] : RateCounts{};
                const bool overHour = q.perHour > 0 && have.lastHour + amount > q.perHour;
                const bool overDay = q.perDay > 0 && have.lastDay + amount > q.perDay;
                if (overHour || overDay) {
                    c.exec("ROLLBACK");
                    result.kind = RateStoreResult::Kind::Limited;
                    result.index = i;
                    result.window = overHour ? RateWindow::Hour : RateWindow::Day;
                    return r;
                }
            }
            r = c.execPrepared(RateAdd, {keyArray, bigintArray(amounts), std::to_string(cut.bucket)});
            if (r.failed())
                return fail(r, "add");
            r = c.exec("COMMIT");
            if (r.failed()) {
                // Lost during COMMIT: maybe added, maybe not. Never retried (could double).
                error = "commit: " + r.error;
                return r;
            }
            result.kind = RateStoreResult::Kind::Added;
            return r;
        });
        if (result.kind != RateStoreResult::Kind::TempFail)
            return result;
        if (error.empty())
            error = "no database connection";
        if (!retry || attempt == 1) {
            logFailure("try_add", error);
            return result;
        }
    }
    return result;
}

std::optional<RateCounts> PgRateStore::get(const std::string& key, core::TimePoint now) {
    const Cutoffs cut = cutoffs(now);
    pg::QueryResult r = pool_.execute(RateSums, {textArray({key}), std::to_string(cut.hourStart),
                                                 std::to_string(cut.dayStart)});
    std::map<std::string, RateCounts> sums;
    if (r.failed() || !parseSums(r, sums)) {
        logFailure("get", r.failed() ? r.error : "unexpected result shape");
        return std::nullopt;
    }
    auto it = sums.find(key);
    return it == sums.end() ? RateCounts{} : it->second;
}

std::optional<std::size_t> PgRateStore::sweep(core::TimePoint now, std::size_t batch) {
    if (batch == 0)
        batch = 1000;
    // Older than (start of this hour - 24 h) counts for nothing; one bucket of slack more.
    const std::int64_t cutoff = cutoffs(now).dayStart - HourUs;
    std::size_t removed = 0;
    for (int round = 0; round < 100; ++round) {
        pg::QueryResult r = pool_.execute(RateSweep, {std::to_string(cutoff), std::to_string(batch)});
        if (r.failed()) {
            logFailure("sweep", r.error);
            return std::nullopt;
        }
        removed += r.affectedRows;
        if (r.affectedRows < batch)
            break;
    }
    return removed;
}

}  // namespace postern::abuse
