// Failed-authentication counters in PostgreSQL: one atomic upsert per failure.
#include "abuse/PgPenaltyStore.h"

#include "abuse/PgStoreSupport.h"
#include "abuse/PgTime.h"

namespace postern::abuse {

namespace {

constexpr const char* FailEvent = "penalty.store_fail";

// $2 = now, $3 = window, both in microseconds; $4 = holdAt (0: none). An expired counter
// starts again at 1 with expiry now + window; a live one counts on (saturating at
// integer's maximum) and keeps its expiry, unless the new count reaches $4, which moves it
// to now + window (PenaltyStore.h). The row lock taken by ON CONFLICT DO UPDATE makes
// concurrent increments queue up; the SET expressions read the row as it was.
const pg::Statement PenaltyIncrement{
    "postern_penalty_increment_hold",
    "INSERT INTO auth_penalties AS p (key, failures, expires)"
    " VALUES ($1, 1, 'epoch'::timestamptz + ($2::bigint + $3::bigint) * interval '1 microsecond')"
    " ON CONFLICT (key) DO UPDATE SET"
    "  failures = CASE WHEN p.expires <= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond' THEN 1"
    "                  WHEN p.failures >= 2147483647 THEN p.failures ELSE p.failures + 1 END,"
    "  expires = CASE WHEN p.expires <= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond' THEN EXCLUDED.expires"
    "                 WHEN $4::integer > 0 AND LEAST(p.failures, 2147483646) + 1 >= $4::integer THEN EXCLUDED.expires"
    "                 ELSE p.expires END"
    " RETURNING p.failures, (extract(epoch FROM p.expires) * 1000000)::bigint"};

const pg::Statement PenaltyGet{
    "postern_penalty_get",
    "SELECT failures, (extract(epoch FROM expires) * 1000000)::bigint FROM auth_penalties"
    " WHERE key = $1 AND expires > 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'"};

// Both counters of a login in one round trip ($2 may be '': no row has that key).
const pg::Statement PenaltyGetPair{
    "postern_penalty_get_pair",
    "SELECT key, failures, (extract(epoch FROM expires) * 1000000)::bigint FROM auth_penalties"
    " WHERE key IN ($1, $2) AND expires > 'epoch'::timestamptz + $3::bigint * interval '1 microsecond'"};

const pg::Statement PenaltyReset{"postern_penalty_reset", "DELETE FROM auth_penalties WHERE key = $1"};

const pg::Statement PenaltySweep{
    "postern_penalty_sweep",
    "DELETE FROM auth_penalties WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM auth_penalties WHERE expires <= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'"
    "   LIMIT $2::integer FOR UPDATE SKIP LOCKED))"
    " AND expires <= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'"};

std::optional<PenaltyCount> toCount(const pg::QueryResult& r) {
    if (r.rows.size() != 1 || r.rows[0].size() != 2 || !r.rows[0][0] || !r.rows[0][1])
        return std::nullopt;
    try {
        PenaltyCount c;
        c.failures = static_cast<std::uint32_t>(std::stoul(*r.rows[0][0]));
        c.expires = fromPgMicros(std::stoll(*r.rows[0][1]));
        return c;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

}  // namespace

PgPenaltyStore::PgPenaltyStore(pg::Pool& pool) : pool_(pool) {}

std::optional<PenaltyCount> PgPenaltyStore::increment(const std::string& key, core::TimePoint now,
                                                      std::chrono::milliseconds window, std::uint32_t holdAt) {
    const auto windowUs = std::chrono::duration_cast<std::chrono::microseconds>(window).count();
    pg::QueryResult r = pool_.execute(PenaltyIncrement, {key, std::to_string(toPgMicros(now)), std::to_string(windowUs),
                                                         std::to_string(holdAt)});
    auto c = r.ok() ? toCount(r) : std::nullopt;
    if (!c)
        logStoreFailure(FailEvent, "increment", r);
    return c;
}

std::optional<PenaltyCount> PgPenaltyStore::get(const std::string& key, core::TimePoint now) {
    pg::QueryResult r = pool_.execute(PenaltyGet, {key, std::to_string(toPgMicros(now))});
    if (r.noRows())
        return PenaltyCount{};
    auto c = r.ok() ? toCount(r) : std::nullopt;
    if (!c)
        logStoreFailure(FailEvent, "get", r);
    return c;
}

std::optional<std::pair<PenaltyCount, PenaltyCount>> PgPenaltyStore::getPair(const std::string& first,
                                                                             const std::string& second,
                                                                             core::TimePoint now) {
    pg::QueryResult r = pool_.execute(PenaltyGetPair, {first, second, std::to_string(toPgMicros(now))});
    if (r.failed()) {
        logStoreFailure(FailEvent, "get", r);
        return std::nullopt;
    }
    std::pair<PenaltyCount, PenaltyCount> out;
    for (const auto& row : r.rows) {
        pg::QueryResult one;
        one.status = r.status;
        one.rows.push_back(row.size() == 3 ? pg::Row{row[1], row[2]} : pg::Row{});
        auto c = toCount(one);
        if (!c || !row[0]) {
            logStoreFailure(FailEvent, "get", r);
            return std::nullopt;
        }
        if (*row[0] == first)
            out.first = *c;
        else if (!second.empty() && *row[0] == second)
            out.second = *c;
    }
    return out;
}

bool PgPenaltyStore::reset(const std::string& key) {
    return executeLogged(pool_, PenaltyReset, {key}, FailEvent, "reset");
}

std::optional<std::size_t> PgPenaltyStore::sweep(core::TimePoint now, std::size_t batch) {
    return sweepInBatches(pool_, PenaltySweep, std::to_string(toPgMicros(now)), batch, FailEvent);
}

}  // namespace postern::abuse
