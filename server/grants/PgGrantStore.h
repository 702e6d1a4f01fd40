// POP-before-SMTP grants shared by every node of a cluster through PostgreSQL
// (table pop_before_smtp_grants, schema/postgres/002_cluster.sql; one row per (address,
// user) since 010_grants_per_user.sql).
#pragma once

#include "grants/DurableGrantStore.h"
#include "pg/Pool.h"
#include "pg/ReadRouter.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace postern::grants {

struct PgGrantSettings {
    // pop_before_smtp.lifetime: how long one POP3 login lets its address relay (> 0).
    std::chrono::seconds lifetime{};
    // pop_before_smtp.ipv6_prefix: IPv6 grants cover this prefix (0..128; 128 = exact).
    unsigned ipv6PrefixLength = 0;  // set from pop_before_smtp.ipv6_prefix
    // cluster.grant_cache_ttl: how long this node may answer Yes from its own memory
    // without asking PostgreSQL (0 = always ask). This is the bounded staleness of the
    // cluster: a grant revoked (posternctl grant revoke / user disable) on another node, or
    // flushed, may still be honoured here for up to cache_ttl; never past its own expiry.
    // Only Yes answers are cached, and only a grant of the MAIL FROM's own user answers from
    // the cache: a fresh grant made on another node is seen at once.
    std::chrono::milliseconds cacheTtl{};
    // Upper bound on cached grants (spread over 16 shards); a full shard is emptied.
    std::size_t cacheSize = 16384;
    // Rows deleted per sweep statement (each a short transaction).
    std::size_t sweepBatch = 1000;

    bool operator==(const PgGrantSettings&) const = default;
};

// Outcomes (core::GrantStore): grant() true once the row is written; lookup() Yes with a
// grant (core::pickGrant among the address's live rows) while a row for the client's key has
// expires > now() (the database's clock, the one clock every node shares), No when there is
// none, TempFail when PostgreSQL cannot answer (never Yes, never No: the SMTP side answers
// 451 4.7.1).
//
// Thread-safe: the pool hands each call its own connection; the positive cache is sharded
// with a mutex per shard (no global lock on the lookup path). The pool must outlive this.
// Logs event=grant.add|grant.use|grant.expire|grant.revoke|grant.fail on "postern.grants".
class PgGrantStore : public DurableGrantStore {
public:
    // Throws std::invalid_argument on a lifetime <= 0 or a prefix > 128 (fail at start-up).
    // reads (optional, cluster.read_conninfo): lookups are asked on its replica first; a miss
    // while the replica lags more than cluster.replica_max_lag, a replica that is down, and a
    // hit whose last_used is due for its once-a-minute stamp go to the primary (pool).
    PgGrantStore(pg::Pool& pool, PgGrantSettings settings, pg::ReadRouter* reads = nullptr);

    // Upsert per (key, user): a newer login of the same user from the key restarts its
    // lifetime; other users' grants for the key stay.
    // false (logged) if PostgreSQL failed.
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override;
    // See the class comment. A Yes from PostgreSQL also stamps last_used (at most once a
    // minute per grant, in the same statement).
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& client, const std::string& sender, core::Grant* out) override;

    // Deletes expired rows in batches of settings.sweepBatch (DELETE of rows picked with
    // FOR UPDATE SKIP LOCKED, so every node may sweep at the same time without waiting on
    // or deleting twice what another node deletes), and revocations older than twice the
    // lifetime (at least a day). Logs event=grant.expire per row.
    // Returns the rows this call deleted, or nullopt if PostgreSQL failed.
    std::optional<std::size_t> sweep();

    // Deletes every grant of `user` (posternctl on disable / password change) and records the
    // revocation (a grant of the user's held through an outage is then not written back).
    // Returns how many, or nullopt on failure. Other nodes may honour a cached one for
    // cache_ttl more.
    std::optional<std::size_t> revokeUser(const std::string& user);

    // Forgets this node's cached answers (tests; after an administrative flush).
    void clearCache();

    // "192.0.2.7", "2001:db8::1" or "2001:db8:1:2::/64": the row's key (core::addressKey).
    std::string keyText(const core::ClientAddress& client) const override;
    std::chrono::seconds lifetime() const override { return settings_.lifetime; }
    // Upsert with the given created/expires (a grant queued while PostgreSQL was down, see
    // WriteBehindGrantStore); the user's row expiring later is left alone (Superseded); a
    // revocation recorded since `created` keeps it out (Revoked). Failed is
    // not logged here (the caller retries; one line per event).
    WriteResult writeThrough(const std::string& key, const core::Grant& grant,
                             std::chrono::system_clock::time_point created) override;

private:
    struct Cached {
        std::vector<core::Grant> grants;  // grants of the address seen since `fetched` (one per user)
        std::chrono::steady_clock::time_point fetched;
    };
    struct Shard {
        std::mutex mutex;
        std::unordered_map<std::string, Cached> entries;
    };
    static constexpr std::size_t ShardCount = 16;
    static constexpr std::size_t MaxCachedPerKey = 32;  // users' grants cached for one address

    Shard& shardFor(const std::string& key);
    bool cachedLookup(const std::string& key, const std::string& sender, core::Grant* out);
    // Adds (or replaces) the user's grant in the key's cached set.
    void remember(const std::string& key, const core::Grant& grant);
    void forget(const std::string& key);

    pg::Pool& pool_;
    pg::ReadRouter* reads_;  // may be null: every lookup on the primary
    const PgGrantSettings settings_;
    std::array<Shard, ShardCount> cache_;
};

}  // namespace postern::grants
