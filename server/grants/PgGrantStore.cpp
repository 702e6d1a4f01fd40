// POP-before-SMTP grants in PostgreSQL: one row per (address, user), upsert on login, lookup
// by key with expiry, batched concurrent sweep, revoke per user, and a short positive cache
// per node.
#include "grants/PgGrantStore.h"

#include "core/EventLine.h"
#include "core/Network.h"
#include "grants/SenderList.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <stdexcept>

namespace postern::grants {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.grants"); }

// Expiry travels as microseconds since the epoch: exact both ways, no time-zone text.
const pg::Statement GrantUpsert{
    "postern_grant_upsert",
    "INSERT INTO pop_before_smtp_grants AS g (key, user_name, created, expires, last_used, senders, limits)"
    " VALUES ($1, $2, now(), now() + $3::bigint * interval '1 second', NULL, $4, $5)"
    " ON CONFLICT (key, user_name) DO UPDATE SET created = EXCLUDED.created,"
    " senders = EXCLUDED.senders, limits = EXCLUDED.limits,"
    " expires = EXCLUDED.expires, last_used = NULL"
    " RETURNING (extract(epoch FROM g.expires) * 1000000)::bigint"};

// A grant made while PostgreSQL was down, written later with the times of the login (the
// expiry is never extended). A row that expires later (a newer login, maybe on another
// node) wins. A revocation since the login (pop_before_smtp_revocations: of the address, the
// user, the user's domain, or everything) keeps it out. Other users' grants for the address
// are not touched. One row: (revoked, written).
const pg::Statement GrantWriteThrough{
    "postern_grant_write_through",
    "WITH revoked AS (SELECT 1 FROM pop_before_smtp_revocations r"
    "                 WHERE r.key IN ($1, '') AND r.user_name IN ($2, '', '@' || split_part($2, '@', 2))"
    "                   AND r.revoked >= 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' LIMIT 1),"
    " written AS (INSERT INTO pop_before_smtp_grants AS g (key, user_name, created, expires, last_used, senders, limits)"
    "   SELECT $1, $2, 'epoch'::timestamptz + $3::bigint * interval '1 microsecond',"
    "          'epoch'::timestamptz + $4::bigint * interval '1 microsecond', NULL, $5, $6"
    "   WHERE NOT EXISTS (SELECT 1 FROM revoked)"
    "   ON CONFLICT (key, user_name) DO UPDATE SET created = EXCLUDED.created,"
    "   senders = EXCLUDED.senders, limits = EXCLUDED.limits, expires = EXCLUDED.expires, last_used = NULL"
    "   WHERE g.expires < EXCLUDED.expires"
    "   RETURNING 1)"
    " SELECT EXISTS (SELECT 1 FROM revoked), EXISTS (SELECT 1 FROM written)"};

// Which of an address's live rows a relay goes on, for the MAIL FROM $2 ('' for none): the
// sender's own user's row (its login or one of its senders, case-insensitively), else the one
// that expires last (core::pickGrant's rule; COLLATE "C": lower() folds ASCII only, as the
// C++ side does). Only that row travels: a carrier-grade NAT address may carry many users'
// grants.
#define POSTERN_GRANT_PICK_ORDER                                                                  \
    " ORDER BY ($2::text <> '' AND (lower(user_name COLLATE \"C\") = lower($2::text COLLATE \"C\")"      \
    "           OR lower($2::text COLLATE \"C\") = ANY (string_to_array(lower(senders COLLATE \"C\"), E'\\n'))))" \
    "          DESC, expires DESC"                                                                   \
    " LIMIT 1"

// One round trip: the row relayed on, and (in a data-modifying CTE, which runs whether or not
// it is read) its last_used stamped when it is older than a minute, so a busy relaying client
// does not turn every lookup into a write.
const pg::Statement GrantLookup{
    "postern_grant_lookup",
    "WITH pick AS (SELECT key, user_name, expires, last_used, senders, limits FROM pop_before_smtp_grants"
    "              WHERE key = $1 AND expires > now()" POSTERN_GRANT_PICK_ORDER "),"
    " used AS (UPDATE pop_before_smtp_grants g SET last_used = now() FROM pick"
    "          WHERE g.key = pick.key AND g.user_name = pick.user_name"
    "            AND (pick.last_used IS NULL OR pick.last_used < now() - interval '60 seconds')"
    "          RETURNING 1)"
    " SELECT user_name, (extract(epoch FROM expires) * 1000000)::bigint, senders, limits FROM pick"};

// The read-only lookup a streaming replica can run (no last_used stamp, which is a write):
// the row relayed on and whether its stamp is due (then the primary is asked with GrantLookup).
const pg::Statement GrantReplicaLookup{
    "postern_grant_replica_lookup",
    "SELECT user_name, (extract(epoch FROM expires) * 1000000)::bigint, senders,"
    " limits, (last_used IS NULL OR last_used < now() - interval '60 seconds')"
    " FROM pop_before_smtp_grants WHERE key = $1 AND expires > now()" POSTERN_GRANT_PICK_ORDER};

#undef POSTERN_GRANT_PICK_ORDER

// Rows are picked and locked with SKIP LOCKED: a row another node's sweep (or a renewing
// upsert) holds is left to it, so concurrent sweeps neither wait nor collide. ctid = ANY
// (ARRAY(...)) makes a TID scan of exactly the picked rows; the expiry is checked again on
// the locked row version.
const pg::Statement GrantSweep{
    "postern_grant_sweep",
    "DELETE FROM pop_before_smtp_grants WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM pop_before_smtp_grants WHERE expires <= now()"
    "   ORDER BY expires LIMIT $1::integer FOR UPDATE SKIP LOCKED))"
    " AND expires <= now() RETURNING key, user_name"};

// The revocation is recorded first (a held grant of the user's is then never written back).
const pg::Statement GrantRevokeUser{
    "postern_grant_revoke_user",
    "WITH r AS (INSERT INTO pop_before_smtp_revocations (key, user_name) VALUES ('', $1)"
    "           ON CONFLICT (key, user_name) DO UPDATE SET revoked = now())"
    " DELETE FROM pop_before_smtp_grants WHERE user_name = $1 RETURNING key"};

// Revocations older than $1 seconds (twice the lifetime, at least a day: nodes may run with
// different lifetimes): no grant held through an outage is that old.
const pg::Statement RevocationSweep{
    "postern_grant_revocation_sweep",
    "DELETE FROM pop_before_smtp_revocations WHERE revoked < now() - $1::bigint * interval '1 second'"};

long long toMicros(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point fromMicros(const pg::Value& v) {
    long long us = 0;
    try {
        us = v ? std::stoll(*v) : 0;
    } catch (const std::exception&) {
        us = 0;  // a past instant: treated as expired by the caller's checks
    }
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::microseconds(us)));
}

}  // namespace

PgGrantStore::PgGrantStore(pg::Pool& pool, PgGrantSettings settings, pg::ReadRouter* reads)
    : pool_(pool), reads_(reads && reads->hasReplica() ? reads : nullptr), settings_(settings) {
    if (settings_.lifetime <= std::chrono::seconds::zero())
        throw std::invalid_argument("pop_before_smtp.lifetime must be positive");
    if (settings_.ipv6PrefixLength > 128)
        throw std::invalid_argument("pop_before_smtp.ipv6_prefix must be 0..128");
    if (settings_.cacheTtl < std::chrono::milliseconds::zero())
        throw std::invalid_argument("cluster.grant_cache_ttl must not be negative");
    if (settings_.sweepBatch == 0)
        throw std::invalid_argument("grant sweep batch must be positive");
}

std::string PgGrantStore::keyText(const core::ClientAddress& client) const {
    return core::addressKey(client.ip, settings_.ipv6PrefixLength);
}

PgGrantStore::Shard& PgGrantStore::shardFor(const std::string& key) {
    return cache_[std::hash<std::string>{}(key) % ShardCount];
}

bool PgGrantStore::cachedLookup(const std::string& key, const std::string& sender, core::Grant* out) {
    if (settings_.cacheTtl.count() == 0)
        return false;
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it == shard.entries.end())
        return false;
    // No older than cache_ttl.
    if (std::chrono::steady_clock::now() - it->second.fetched >= settings_.cacheTtl) {
        shard.entries.erase(it);
        return false;
    }
    // Only a live grant of the sender's own user answers from here (never past its own
    // expiry). Anything else is asked of PostgreSQL: a grant another user of the address
    // got a moment ago on another node is then seen at once.
    const auto now = std::chrono::system_clock::now();
    for (const core::Grant& g : it->second.grants) {
        if (g.expires > now && core::grantBelongsTo(g, sender)) {
            if (out)
                *out = g;
            return true;
        }
    }
    return false;
}

void PgGrantStore::remember(const std::string& key, const core::Grant& grant) {
    if (settings_.cacheTtl.count() == 0)
        return;
    Shard& shard = shardFor(key);
    const std::size_t perShard = settings_.cacheSize / ShardCount + 1;
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it != shard.entries.end()) {
        // The user's grant replaces its cached one; the others of the address and the
        // entry's age stay as they were.
        auto& held = it->second.grants;
        auto same = std::find_if(held.begin(), held.end(), [&](const core::Grant& g) { return g.user == grant.user; });
        if (same != held.end()) {
            *same = grant;
        } else {
            if (held.size() >= MaxCachedPerKey)  // a busy NAT address: forget the one expiring first
                held.erase(std::min_element(held.begin(), held.end(), [](const core::Grant& a, const core::Grant& b) {
                    return a.expires < b.expires;
                }));
            held.push_back(grant);
        }
        return;
    }
    if (shard.entries.size() >= perShard)
        shard.entries.clear();  // entries live seconds: dropping them all costs a few queries
    shard.entries.emplace(key, Cached{{grant}, std::chrono::steady_clock::now()});
}

void PgGrantStore::forget(const std::string& key) {
    Shard& shard = shardFor(key);
    std::lock_guard lock(shard.mutex);
    shard.entries.erase(key);
}

void PgGrantStore::clearCache() {
    for (Shard& shard : cache_) {
        std::lock_guard lock(shard.mutex);
        shard.entries.clear();
    }
}

bool PgGrantStore::grant(const core::ClientAddress& client, const core::Grant& grant) {
    const std::string key = keyText(client);
    const std::string& user = grant.user;
    // Idempotent, so the pool's one retry after a dropped connection is harmless.
    pg::QueryResult r = pool_.execute(GrantUpsert, {key, user, std::to_string(settings_.lifetime.count()),
                                                    joinSenders(grant.senders), joinLimits(grant.limits)});
    if (!r.ok() || r.rows.empty() || r.rows[0].empty()) {
        forget(key);
        logger().error(core::EventLine("grant.fail")
                           .add("ip", key)
                           .add("user", user)
                           .text("error", r.failed() ? r.error : std::string("no row returned"))
                           .str());
        return false;
    }
    core::Grant stored = grant;
    stored.expires = fromMicros(r.rows[0][0]);
    remember(key, stored);
    logger().information(core::EventLine("grant.add")
                             .add("ip", key)
                             .add("user", user)
                             .add("ttl", settings_.lifetime.count(), "s")
                             .add("store", "postgres")
                             .str());
    return true;
}

DurableGrantStore::WriteResult PgGrantStore::writeThrough(const std::string& key, const core::Grant& grant,
                                                          std::chrono::system_clock::time_point created) {
    // Idempotent (the same times again), so the pool's retry after a dropped connection is
    // harmless.
    pg::QueryResult r = pool_.execute(GrantWriteThrough, {key, grant.user, std::to_string(toMicros(created)),
                                                          std::to_string(toMicros(grant.expires)),
                                                          joinSenders(grant.senders), joinLimits(grant.limits)});
    if (r.failed()) {
        // One line per failed pass (the write-behind pass stops here and retries after its
        // backoff), with the reason: a persistent error (a revoked privilege, a CHECK) would
        // otherwise keep grants node-local for ever without a word.
        logger().warning(core::EventLine("grant.write_through_fail")
                             .add("ip", key)
                             .add("user", grant.user)
                             .text("error", r.error)
                             .str());
        return WriteResult::Failed;
    }
    if (r.rows.size() != 1 || r.rows[0].size() != 2) {
        logger().warning(core::EventLine("grant.write_through_fail")
                             .add("ip", key)
                             .add("user", grant.user)
                             .text("error", "unexpected result shape")
                             .str());
        return WriteResult::Failed;
    }
    if (r.rows[0][0].value_or("f") == "t")
        return WriteResult::Revoked;
    if (r.rows[0][1].value_or("f") != "t") {
        forget(key);  // the stored grant is another one: ask PostgreSQL next time
        return WriteResult::Superseded;
    }
    remember(key, grant);
    return WriteResult::Written;
}

core::Answer PgGrantStore::lookup(const core::ClientAddress& client, const std::string& sender, core::Grant* out) {
    const std::string key = keyText(client);
    core::Grant g;
    if (cachedLookup(key, sender, &g)) {
        if (out)
            *out = g;
        logger().information(core::EventLine("grant.use").add("ip", key).add("user", g.user).add("src", "cache").str());
        return core::Answer::Yes;
    }
    // The one row of a hit (4 columns, 5 with the replica's "stamp due"); false on another shape.
    auto parse = [](const pg::QueryResult& r, core::Grant& one, bool* due) {
        if (r.rows.size() != 1 || r.rows[0].size() < (due ? 5u : 4u) || !r.rows[0][0]) return false;
        const auto& row = r.rows[0];
        one.user = *row[0];
        one.expires = fromMicros(row[1]);
        one.senders = row[2] ? splitSenders(*row[2]) : std::vector<std::string>{one.user};
        one.limits = row[3] ? splitLimits(*row[3]) : std::map<std::string, std::string>{};
        if (due) *due = row[4].value_or("t") != "f";
        return true;
    };
    const char* src = "db";
    bool found = false;
    if (reads_) {
        // Only a hit is taken from the replica. A miss is asked on the primary: a standby that
        // has replayed all it received can still lack a grant committed a moment ago on
        // another node (not yet streamed), and "no grant" is a permanent 554. A hit due for
        // its last_used stamp is asked there too (a write). So a miss needs no lag check
        // (confirmMiss = false): it goes to the primary whatever the lag.
        std::optional<pg::QueryResult> replica = reads_->readReplica(GrantReplicaLookup, {key, sender}, false);
        if (replica && replica->failed()) {
            logger().warning(core::EventLine("grant.lookup_fail").add("ip", key).text("error", replica->error).str());
            return core::Answer::TempFail;
        }
        // Only the sender's own user's grant is taken from there: another user's could be the
        // replica's answer while the sender's own login, a moment ago, has not streamed yet
        // (own_senders_only would then refuse the sender for good).
        bool due = true;
        if (replica && replica->ok() && parse(*replica, g, &due) && !due && core::grantBelongsTo(g, sender)) {
            found = true;
            src = "replica";
        }
    }
    if (!found) {
        pg::QueryResult r = pool_.execute(GrantLookup, {key, sender});
        if (r.failed()) {
            // Fail closed both ways: not "no grant" (that would be a permanent relay refusal)
            // and never "yes".
            logger().warning(core::EventLine("grant.lookup_fail").add("ip", key).text("error", r.error).str());
            return core::Answer::TempFail;
        }
        if (r.noRows())
            return core::Answer::No;
        if (!parse(r, g, nullptr)) {
            logger().error(
                core::EventLine("grant.lookup_fail").add("ip", key).text("error", "unexpected result shape").str());
            return core::Answer::TempFail;
        }
    }
    remember(key, g);
    if (out)
        *out = g;
    logger().information(core::EventLine("grant.use").add("ip", key).add("user", g.user).add("src", src).str());
    return core::Answer::Yes;
}

std::optional<std::size_t> PgGrantStore::sweep() {
    std::size_t removed = 0;
    // Bounded: a backlog larger than this is left to the next run (or another node).
    for (int round = 0; round < 100; ++round) {
        pg::QueryResult r = pool_.execute(GrantSweep, {std::to_string(settings_.sweepBatch)});
        if (r.failed()) {
            logger().warning(core::EventLine("grant.sweep_fail").text("error", r.error).str());
            return std::nullopt;
        }
        for (const auto& row : r.rows) {
            const std::string key = row.size() > 0 && row[0] ? *row[0] : "?";
            forget(key);
            logger().information(core::EventLine("grant.expire")
                                     .add("ip", key)
                                     .add("user", row.size() > 1 && row[1] ? *row[1] : "?")
                                     .add("store", "postgres")
                                     .str());
        }
        removed += r.rows.size();
        if (r.rows.size() < settings_.sweepBatch)
            break;
    }
    // Twice the lifetime and at least a day: the nodes' clocks (a held grant's login time)
    // may differ a little, and their lifetimes during a configuration change.
    const long long keep = std::max<long long>(2LL * settings_.lifetime.count(), 24LL * 3600);
    pg::QueryResult old = pool_.execute(RevocationSweep, {std::to_string(keep)});
    if (old.failed())
        logger().warning(core::EventLine("grant.sweep_fail").text("error", old.error).str());
    return removed;
}

std::optional<std::size_t> PgGrantStore::revokeUser(const std::string& user) {
    pg::QueryResult r = pool_.execute(GrantRevokeUser, {user});
    if (r.failed()) {
        logger().warning(core::EventLine("grant.revoke_fail").add("user", user).text("error", r.error).str());
        return std::nullopt;
    }
    for (const auto& row : r.rows) {
        const std::string key = !row.empty() && row[0] ? *row[0] : "?";
        forget(key);
        logger().notice(core::EventLine("grant.revoke").add("ip", key).add("user", user).str());
    }
    return r.rows.size();
}

}  // namespace postern::grants
