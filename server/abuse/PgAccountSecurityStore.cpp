#include "abuse/PgAccountSecurityStore.h"

#include "abuse/NameFold.h"
#include "abuse/PgStoreSupport.h"
#include "abuse/PgTime.h"
#include "core/Network.h"
#include "pg/Arrays.h"

#include <algorithm>
#include <set>
#include <string_view>

namespace postern::abuse {

namespace {

constexpr const char* FailEvent = "account_security.store_fail";

// $1..$7: the login log (account, at in us, ip, protocol, mechanism, tls, result), $14
// (known): the name has a success or a verified entry in this batch; $8, $9: (account, ip)
// of successful logins; $10: now in us; $11..$13: (account, rejected, bounces); $15, $16:
// (login name, ip) of successful logins typed as a name that is not the account's (schema
// 011: the known-address check asks under the name given). An entry
// that is not known is written only for a tracked name (one with a login log or a flag:
// index lookups, in this same statement), so sprayed user names leave no rows.
// Answers (account, login rows written) per account written. Data-modifying CTEs all run
// to completion whether or not the SELECT reads them.
// Before a flush: tells a pooled connection the server closed from a lost COMMIT.
const pg::Statement AliveProbe{"postern_account_security_alive", "SELECT 1"};

const pg::Statement FlushWrite{
    "postern_account_security_flush",
    "WITH l AS (INSERT INTO account_logins (account, at, ip, protocol, mechanism, tls, result)"
    "   SELECT a, 'epoch'::timestamptz + t * interval '1 microsecond', ip::inet, p, m, tl, r"
    "   FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    "               $14::boolean[]) AS x(a, t, ip, p, m, tl, r, k)"
    "   WHERE k OR EXISTS (SELECT 1 FROM account_logins AS o WHERE o.account = x.a)"
    "      OR EXISTS (SELECT 1 FROM account_flags AS f WHERE f.account = x.a) RETURNING account, at),"
    // Each written account's newest entry (schema 012), in account order (two nodes'
    // flushes lock the same rows in the same order).
    " act AS (INSERT INTO account_login_activity AS s (account, last_at)"
    "   SELECT account, max(at) FROM l GROUP BY account ORDER BY account"
    "   ON CONFLICT (account) DO UPDATE SET last_at = greatest(s.last_at, EXCLUDED.last_at) RETURNING 1),"
    " i AS (INSERT INTO account_security_ips AS s (account, ip, last_seen)"
    "   SELECT a, ip::inet, 'epoch'::timestamptz + $10::bigint * interval '1 microsecond'"
    "   FROM unnest($8::text[], $9::text[]) AS x(a, ip)"
    "   ON CONFLICT (account, ip) DO UPDATE SET last_seen = greatest(s.last_seen, EXCLUDED.last_seen) RETURNING 1),"
    " c AS (INSERT INTO account_security_counts AS s (account, bucket, rejected, bounces)"
    "   SELECT a, date_trunc('minute', 'epoch'::timestamptz + $10::bigint * interval '1 microsecond'), rj, bn"
    "   FROM unnest($11::text[], $12::bigint[], $13::bigint[]) AS x(a, rj, bn)"
    "   ON CONFLICT (account, bucket) DO UPDATE SET rejected = s.rejected + EXCLUDED.rejected,"
    "      bounces = s.bounces + EXCLUDED.bounces RETURNING 1),"
    " n AS (INSERT INTO account_login_names AS s (login, ip, last_seen)"
    "   SELECT nm, ip::inet, 'epoch'::timestamptz + $10::bigint * interval '1 microsecond'"
    "   FROM unnest($15::text[], $16::text[]) AS x(nm, ip)"
    "   ON CONFLICT (login, ip) DO UPDATE SET last_seen = greatest(s.last_seen, EXCLUDED.last_seen) RETURNING 1)"
    " SELECT account, count(*) FROM l GROUP BY account"};

// $1 accounts, $2 now (us), $3 window (us), $4..$7 max ips, networks, remote_rejected,
// bounces (0 = off), $8 login log entries kept per account, $9 node id, $10 evaluate?,
// $11 login names of other accounts' names written (their addresses are trimmed to $12, the
// most recent).
// Trims the login log of these accounts to its count bound (that many successful logins and
// that many other attempts: failures never push successes out) and flags, once, each account
// past a threshold (the worst reason); returns only the flags this statement inserted.
const pg::Statement FlushEvaluate{
    "postern_account_security_evaluate",
    "WITH since AS (SELECT 'epoch'::timestamptz + ($2::bigint - $3::bigint) * interval '1 microsecond' AS t),"
    " trimmed AS (DELETE FROM account_logins WHERE id IN ("
    "   SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY account, result = 'ok' ORDER BY at DESC, id DESC) AS n"
    "                   FROM account_logins WHERE account = ANY ($1::text[])) AS ranked WHERE n > $8::bigint)"
    "   RETURNING 1),"
    " names AS (DELETE FROM account_login_names WHERE ctid IN ("
    "   SELECT ctid FROM (SELECT ctid, row_number() OVER (PARTITION BY login ORDER BY last_seen DESC) AS n"
    "                     FROM account_login_names WHERE login = ANY ($11::text[])) AS ranked WHERE n > $12::bigint)"
    "   RETURNING 1),"
    " ips AS (SELECT account, count(*) AS ips,"
    "   count(DISTINCT network(set_masklen(ip, CASE WHEN family(ip) = 4 THEN 24 ELSE 48 END))) AS nets"
    "   FROM account_security_ips, since WHERE account = ANY ($1::text[]) AND last_seen > since.t GROUP BY account),"
    " cnt AS (SELECT account, sum(rejected) AS rej, sum(bounces) AS bnc"
    "   FROM account_security_counts, since WHERE account = ANY ($1::text[]) AND bucket > since.t GROUP BY account),"
    " cand AS (SELECT DISTINCT ON (a.account) a.account, r.reason, r.value, r.threshold"
    "   FROM unnest($1::text[]) AS a(account) LEFT JOIN ips USING (account) LEFT JOIN cnt USING (account)"
    "   CROSS JOIN LATERAL (VALUES (1, 'ips', coalesce(ips.ips, 0), $4::bigint),"
    "                              (2, 'networks', coalesce(ips.nets, 0), $5::bigint),"
    "                              (3, 'remote_rejected', coalesce(cnt.rej, 0)::bigint, $6::bigint),"
    "                              (4, 'bounces', coalesce(cnt.bnc, 0)::bigint, $7::bigint))"
    "        AS r(k, reason, value, threshold)"
    "   WHERE $10::boolean AND r.threshold > 0 AND r.value > r.threshold"
    "   ORDER BY a.account, r.value::numeric / r.threshold DESC, r.k),"
    " ins AS (INSERT INTO account_flags (account, reason, value, threshold, node_id)"
    "   SELECT account, reason, value, threshold, $9 FROM cand ON CONFLICT (account) DO NOTHING"
    "   RETURNING account, reason, value, threshold)"
    " SELECT account, reason, value, threshold, (SELECT count(*) FROM trimmed) FROM ins"};

const pg::Statement Flagged{"postern_account_security_flagged", "SELECT account FROM account_flags"};

const pg::Statement Release{
    "postern_account_security_release",
    "WITH f AS (DELETE FROM account_flags WHERE account = $1 RETURNING 1),"
    " i AS (DELETE FROM account_security_ips WHERE account = $1 RETURNING 1),"
    " c AS (DELETE FROM account_security_counts WHERE account = $1 RETURNING 1)"
    " SELECT (SELECT count(*) FROM f)"};

// $1 the account (the name the client gave), $2 the address or IPv6 network
// (knownAddressKey), $3 / $4 the oldest detection IP / login log entry that counts (us): a
// successful login from there in the detection IPs or the login log (both read through their
// account index), or of that login name ($5: folded, abuse/NameFold.h) for an account of
// another name (schema 011).
const pg::Statement Known{
    "postern_account_security_known",
    "SELECT EXISTS (SELECT 1 FROM account_security_ips WHERE account = $1 AND ip <<= $2::inet"
    "               AND last_seen > 'epoch'::timestamptz + $3::bigint * interval '1 microsecond')"
    "    OR EXISTS (SELECT 1 FROM account_logins WHERE account = $1 AND result = 'ok' AND ip <<= $2::inet"
    "               AND at > 'epoch'::timestamptz + $4::bigint * interval '1 microsecond')"
    "    OR EXISTS (SELECT 1 FROM account_login_names WHERE login = $5 AND ip <<= $2::inet"
    "               AND last_seen > 'epoch'::timestamptz + $4::bigint * interval '1 microsecond')"};

// $1 window start (us), $2 login log start (us): rows past their age. Small batches, skipping
// locked rows (every node prunes).
const pg::Statement Prune{
    "postern_account_security_prune",
    "WITH i AS (DELETE FROM account_security_ips WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM account_security_ips WHERE last_seen <= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'"
    "   LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING 1),"
    " c AS (DELETE FROM account_security_counts WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM account_security_counts WHERE bucket <= 'epoch'::timestamptz + $1::bigint * interval '1 microsecond'"
    "   LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING 1),"
    " l AS (DELETE FROM account_logins WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM account_logins WHERE at <= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'"
    "   LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING 1),"
    " n AS (DELETE FROM account_login_names WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM account_login_names WHERE last_seen <= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'"
    "   LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING 1),"
    // An account whose newest entry is past the age has no login log left (schema 012).
    " a AS (DELETE FROM account_login_activity WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM account_login_activity WHERE last_at <= 'epoch'::timestamptz + $2::bigint * interval '1 microsecond'"
    "   LIMIT 5000 FOR UPDATE SKIP LOCKED)) RETURNING 1)"
    " SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM c), (SELECT count(*) FROM l), (SELECT count(*) FROM n)"};

// The account cap (account_security.max_tracked_accounts): past it the least recently active
// accounts lose their login log, oldest first, each account's whole log. Read from
// account_login_activity (schema 012; one row per account, along its (last_at, account)
// index): before, an aggregate over the whole login log met statement_timeout at an ISP's
// tens of millions of rows, and the cap was never applied (review finding). Its own
// statements, run at most every EvictInterval, so they never hold up the age deletions above:
// EvictCutoff finds the first account past the cap once ($1 the cap; its last_at in us and
// its name), then Evict takes the accounts at or below it in batches ($1, $2 the cutoff, $3
// the batch) and returns (accounts picked, accounts whose activity row it deleted, accounts
// whose log rows it deleted).
// Evict locks the activity rows first, in account order (the flush's order), skipping rows a
// flush is writing and, by their row version (ctid) and last_at (an ordinary condition, which
// every PostgreSQL rechecks on the updated row; a TID scan's own recheck is recent), rows a
// flush updated since they were picked: a flush that wrote one of these accounts keeps it,
// and one that comes later waits for the lock, then inserts its activity row again beside its
// new entries. Only the logs of the accounts whose activity row it deleted go.
const pg::Statement EvictCutoff{
    "postern_account_security_evict_cutoff",
    "SELECT (extract(epoch FROM last_at) * 1000000)::bigint, account FROM account_login_activity"
    " ORDER BY last_at DESC, account DESC OFFSET $1::bigint LIMIT 1"};

const pg::Statement Evict{
    "postern_account_security_evict",
    "WITH c AS (SELECT ctid AS row, last_at FROM account_login_activity"
    "   WHERE (last_at, account) <= ('epoch'::timestamptz + $1::bigint * interval '1 microsecond', $2::text)"
    "   ORDER BY last_at, account LIMIT $3::bigint),"
    " v AS (SELECT s.account FROM account_login_activity AS s JOIN c ON s.ctid = c.row"
    "   WHERE s.last_at = c.last_at ORDER BY s.account FOR UPDATE OF s SKIP LOCKED),"
    " a AS (DELETE FROM account_login_activity WHERE account IN (SELECT account FROM v) RETURNING account),"
    " e AS (DELETE FROM account_logins WHERE account IN (SELECT account FROM a) RETURNING account)"
    " SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM a), (SELECT count(DISTINCT account) FROM e)"};

// An Evict statement deletes at most about EvictRowBudget login rows (an account keeps up to
// login_log_max_entries successes and as many other attempts), at most EvictBatchesPerRun
// statements a run.
constexpr long long EvictRowBudget = 200000;
constexpr long long EvictMaxBatch = 2000;
constexpr int EvictBatchesPerRun = 10;

constexpr std::chrono::minutes EvictInterval{10};

// inet accepts what ClientAddress::host() writes; a scoped address ("fe80::1%eth0") loses
// its zone, anything else unparsable is left out (it would fail the whole batch).
std::optional<std::string> inetText(const std::string& ip) {
    std::string s = ip.substr(0, ip.find('%'));
    if (!core::parseAddress(s)) return std::nullopt;
    return s;
}

std::uint64_t toU64(const pg::Value& v) {
    try {
        return v ? std::stoull(*v) : 0;
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace


bool PgAccountSecurityStore::flush(const ActivityBatch& batch, core::TimePoint now,
                                   const AccountSecuritySettings& settings, std::vector<AccountFlag>& newlyFlagged) {
    std::vector<std::string> la, lt, lip, lp, lm, ltl, lr, lk;
    std::set<std::string_view> okNow;  // names with a success in this batch: their failures count
    for (const auto& e : batch.logins)
        if (e.result == "ok" || e.verified) okNow.insert(e.user);
    if (settings.loginLogMaxEntries > 0)
        for (const auto& e : batch.logins) {
            auto ip = inetText(e.ip);
            if (!ip || e.user.empty() || e.user.size() > 320) continue;
            la.push_back(e.user);
            lt.push_back(std::to_string(toPgMicros(e.at)));
            lip.push_back(*ip);
            lp.push_back(e.protocol);
            lm.push_back(e.mechanism);
            ltl.push_back(e.tls);
            lr.push_back(e.result);
            lk.push_back(okNow.count(e.user) ? "t" : "f");
        }
    std::vector<std::string> ia, iip;
    for (const auto& [user, ips] : batch.loginIps) {
        if (user.empty() || user.size() > 320) continue;
        std::set<std::string> seen;  // one row per (account, ip) in one upsert
        for (const auto& ip : ips)
            if (auto t = inetText(ip); t && seen.insert(*t).second) {
                ia.push_back(user);
                iip.push_back(*t);
            }
    }
    std::vector<std::string> na, nip;  // login names of accounts of another name (schema 011)
    std::set<std::string> names;
    for (const auto& [name, ips] : batch.loginNameIps) {
        if (name.empty() || name.size() > 320) continue;
        names.insert(name);
        std::set<std::string> seen;
        for (const auto& ip : ips)
            if (auto t = inetText(ip); t && seen.insert(*t).second) {
                na.push_back(name);
                nip.push_back(*t);
            }
    }
    std::vector<std::string> ca, crj, cbn;
    for (const auto& [user, c] : batch.counts) {
        if (user.empty() || user.size() > 320) continue;
        ca.push_back(user);
        crj.push_back(std::to_string(c.remoteRejected));
        cbn.push_back(std::to_string(c.bounces));
    }
    const std::string nowUs = std::to_string(toPgMicros(now));
    // Not idempotent (login rows are added, counts summed): never the pool's retry. A
    // statement that may have committed before its answer was lost counts as written (the
    // batch is not sent again: a count too low errs away from holding an innocent account).
    const pg::Params params{pg::textArray(la), pg::textArray(lt), pg::textArray(lip), pg::textArray(lp),
                            pg::textArray(lm), pg::textArray(ltl), pg::textArray(lr), pg::textArray(ia),
                            pg::textArray(iip), nowUs, pg::textArray(ca), pg::textArray(crj),
                            pg::textArray(cbn), pg::textArray(lk), pg::textArray(na), pg::textArray(nip)};
    // A pooled connection the server closed while idle fails at its first statement with no
    // answer, which looks the same as a lost COMMIT: a cheap statement first tells the two
    // apart (once per flush, not per login).
    bool connectionDead = false;
    pg::QueryResult w = pool_.withConnection([&](pg::Connection& c) {
        pg::QueryResult alive = c.execPrepared(AliveProbe, {});
        if (alive.failed()) {
            connectionDead = true;
            return alive;
        }
        return c.execPrepared(FlushWrite, params);
    });
    if (w.failed()) {
        const bool maybeWritten = !connectionDead && w.mayHaveCommitted();
        logStoreFailure(FailEvent, maybeWritten ? "flush_outcome_unknown" : "flush", w);
        return maybeWritten;
    }
    // Evaluated (and their login log trimmed): the accounts written, not every name tried.
    std::set<std::string> touched;
    std::uint64_t written = 0;
    for (const auto& row : w.rows) {
        if (row.size() < 2 || !row[0]) continue;
        touched.insert(*row[0]);
        written += toU64(row[1]);
    }
    if (written < la.size()) untracked_ += la.size() - written;
    touched.insert(ia.begin(), ia.end());
    touched.insert(ca.begin(), ca.end());
    if (touched.empty() && names.empty()) return true;
    const auto windowUs = std::chrono::duration_cast<std::chrono::microseconds>(settings.window).count();
    pg::QueryResult e = pool_.execute(
        FlushEvaluate,
        {pg::textArray(std::vector<std::string>(touched.begin(), touched.end())), nowUs, std::to_string(windowUs),
         std::to_string(settings.maxIps), std::to_string(settings.maxNetworks),
         std::to_string(settings.maxRemoteRejected), std::to_string(settings.maxBounces),
         std::to_string(settings.loginLogMaxEntries), settings.nodeId, settings.enabled ? "true" : "false",
         pg::textArray(std::vector<std::string>(names.begin(), names.end())), std::to_string(MaxLoginNameIps)});
    if (e.failed()) {
        // The batch is written; the next flush touching these accounts evaluates them again.
        logStoreFailure(FailEvent, "evaluate", e);
        return true;
    }
    for (const auto& row : e.rows) {
        if (row.size() < 4 || !row[0] || !row[1]) continue;
        newlyFlagged.push_back({*row[0], *row[1], toU64(row[2]), toU64(row[3])});
    }
    return true;
}

std::optional<std::vector<std::string>> PgAccountSecurityStore::flagged() {
    pg::QueryResult r = pool_.execute(Flagged, {});
    if (r.failed()) {
        logStoreFailure(FailEvent, "flagged", r);
        return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& row : r.rows)
        if (!row.empty() && row[0]) out.push_back(*row[0]);
    return out;
}

bool PgAccountSecurityStore::release(const std::string& user) {
    return executeLogged(pool_, Release, {user}, FailEvent, "release");
}

bool PgAccountSecurityStore::prune(core::TimePoint now, const AccountSecuritySettings& settings) {
    pg::QueryResult r = pool_.execute(Prune, {std::to_string(toPgMicros(now - settings.window)),
                                              std::to_string(toPgMicros(now - settings.loginLogMaxAge))});
    if (r.failed()) {
        logStoreFailure(FailEvent, "prune", r);
        return false;
    }
    // The cap on accounts: rarely (not at the start-up flush, which runs before the listeners
    // open), and tried again only after the interval, failed or not.
    if (lastEvict_ == core::TimePoint{}) {
        lastEvict_ = now;
        return true;
    }
    if (now - lastEvict_ < EvictInterval) return true;
    lastEvict_ = now;
    pg::QueryResult cut =
        pool_.execute(EvictCutoff, {std::to_string(std::max<std::size_t>(settings.maxTrackedAccounts, 1))});
    if (cut.failed()) {
        logStoreFailure(FailEvent, "evict", cut);
        return false;
    }
    if (cut.rows.empty() || cut.rows[0].size() < 2 || !cut.rows[0][0] || !cut.rows[0][1]) return true;  // within the cap
    const long long perAccount = 2 * std::max<long long>(1, settings.loginLogMaxEntries);
    const long long batch = std::clamp<long long>(EvictRowBudget / perAccount, 1, EvictMaxBatch);
    for (int n = 0; n < EvictBatchesPerRun; ++n) {
        pg::QueryResult e = pool_.execute(Evict, {*cut.rows[0][0], *cut.rows[0][1], std::to_string(batch)});
        if (e.failed() || e.rows.empty() || e.rows[0].size() < 3) {
            logStoreFailure(FailEvent, "evict", e);
            return false;
        }
        evicted_ += toU64(e.rows[0][2]);
        // Done when fewer than a batch were left, or when every one picked was being
        // written (taken at the next run).
        if (static_cast<long long>(toU64(e.rows[0][0])) < batch || toU64(e.rows[0][1]) == 0) break;
    }
    return true;
}

std::optional<bool> PgAccountSecurityStore::knownAddress(const std::string& user, const std::string& ip,
                                                         unsigned ipv6Prefix, core::TimePoint ipsSince,
                                                         core::TimePoint logSince) {
    const auto key = knownAddressKey(ip, ipv6Prefix);
    if (!key) return false;
    pg::QueryResult r = pool_.execute(Known, {user, *key, std::to_string(toPgMicros(ipsSince)),
                                              std::to_string(toPgMicros(logSince)), foldName(user)});
    if (r.failed() || r.rows.size() != 1 || r.rows[0].empty() || !r.rows[0][0]) {
        logStoreFailure(FailEvent, "known_address", r);
        return std::nullopt;
    }
    return *r.rows[0][0] == "t";
}

AccountStoreCounters PgAccountSecurityStore::counters() const {
    AccountStoreCounters c;
    c.untrackedLogins = untracked_.load();
    c.evictedLogs = evicted_.load();
    return c;
}

}  // namespace postern::abuse
