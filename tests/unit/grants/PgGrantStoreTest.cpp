// PgGrantStore against a real PostgreSQL (schema/postgres applied). The database comes from
// POSTERN_TEST_PG_CONNINFO; without it these cases are skipped with a message (ctest's
// unit.grants). tests/e2e/test_cluster_stores.py starts PostgreSQL, migrates it and runs
// them with the variable set; with POSTERN_TEST_PG_DOWN_CONNINFO (a stopped server) it runs
// the outage case.
#include "grants/PgGrantStore.h"

#include "pg/Connection.h"
#include "pg/ReadRouter.h"

#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace postern;
using grants::PgGrantSettings;
using grants::PgGrantStore;
using namespace std::chrono_literals;

namespace {

using namespace postern::testing;


core::ClientAddress addr(const std::string& ip) {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress(ip);
    return c;
}

PgGrantSettings grantSettings(std::chrono::seconds lifetime, unsigned prefix = 128,
                              std::chrono::milliseconds cacheTtl = 0ms) {
    PgGrantSettings s;
    s.lifetime = lifetime;
    s.ipv6PrefixLength = prefix;
    s.cacheTtl = cacheTtl;
    return s;
}

template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond())
            return true;
        std::this_thread::sleep_for(50ms);
    }
    return cond();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_grant_store)

BOOST_AUTO_TEST_CASE(upsert_lookup_and_expiry, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore store(pool, grantSettings(600s));

    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::No));
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    const auto left = g.expires - std::chrono::system_clock::now();
    BOOST_TEST((left > 590s && left <= 601s));
    // The row itself, and last_used stamped by the lookup.
    BOOST_TEST(db.one("SELECT user_name || ' ' || (last_used IS NOT NULL) FROM pop_before_smtp_grants WHERE key = '192.0.2.7'") ==
               "bob@example.test true");

    // A newer login of the same user renews its row (no last_used).
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    BOOST_TEST(db.one("SELECT count(*) || ' ' || bool_and(last_used IS NULL) FROM pop_before_smtp_grants") == "1 true");
    // Another user from the same address (a shared NAT address) gets a row of its own; each
    // MAIL FROM is answered with its own user's grant, nobody's with the one expiring last.
    BOOST_TEST(store.grant(addr("192.0.2.7"), "alice@example.test", {"alice@example.test", "ali@example.test"}));
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants") == "2");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    // Only the row relayed on gets its last_used stamp.
    BOOST_TEST(db.one("SELECT string_agg(user_name || '=' || (last_used IS NOT NULL), ',' ORDER BY user_name)"
                      " FROM pop_before_smtp_grants") == "alice@example.test=false,bob@example.test=true");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "ALI@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    BOOST_TEST((store.lookup(addr("192.0.2.8"), nullptr) == core::Answer::No));
    db.sql("DELETE FROM pop_before_smtp_grants WHERE user_name = 'alice@example.test'");

    // Expiry on the database's clock: a 1 s grant answers No once it lapsed.
    PgGrantStore shortLived(pool, grantSettings(1s));
    BOOST_TEST(shortLived.grant(addr("198.51.100.1"), "carol@example.test"));
    BOOST_TEST((shortLived.lookup(addr("198.51.100.1"), nullptr) == core::Answer::Yes));
    BOOST_TEST(eventually([&] { return shortLived.lookup(addr("198.51.100.1"), nullptr) == core::Answer::No; }, 3000ms));
    // Expired rows stay until a sweep removes them (and only them).
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants") == "2");
    auto swept = store.sweep();
    BOOST_REQUIRE(swept.has_value());
    BOOST_TEST(*swept == 1u);
    BOOST_TEST(db.one("SELECT string_agg(key, ',') FROM pop_before_smtp_grants") == "192.0.2.7");
}

BOOST_AUTO_TEST_CASE(the_cache_answers_only_for_the_senders_own_grant, *boost::unit_test::precondition(WithPg())) {
    // Two nodes sharing the table, each with its own cache. Node B has bob's grant for the
    // address cached; a grant alice gets there on node A a moment later must be seen on
    // node B at once for alice's MAIL FROM (not answered with bob's cached grant: a 554).
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore nodeA(pool, grantSettings(600s, 128, 60s));
    PgGrantStore nodeB(pool, grantSettings(600s, 128, 60s));
    BOOST_TEST(nodeA.grant(addr("192.0.2.30"), "bob@example.test"));
    core::Grant g;
    BOOST_TEST((nodeB.lookup(addr("192.0.2.30"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(nodeA.grant(addr("192.0.2.30"), "alice@example.test"));
    BOOST_TEST((nodeB.lookup(addr("192.0.2.30"), "alice@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    // bob's is answered from node B's cache (the row is gone, the cache has not lapsed).
    db.sql("DELETE FROM pop_before_smtp_grants WHERE user_name = 'bob@example.test'");
    BOOST_TEST((nodeB.lookup(addr("192.0.2.30"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    // A MAIL FROM of nobody's is asked of PostgreSQL: alice's, the one left.
    BOOST_TEST((nodeB.lookup(addr("192.0.2.30"), "eve@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
}

BOOST_AUTO_TEST_CASE(a_replica_miss_is_asked_on_the_primary, *boost::unit_test::precondition(WithPg())) {
    // A standby that has replayed everything it received looks caught up (lag 0), yet may
    // not have received a grant committed a moment ago on another node. Here the "replica"
    // is the same server with an empty grants table first on its search_path: not in
    // recovery, so lag 0, and it never has the grant. "No" would be a permanent 554.
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    db.sql("DROP SCHEMA IF EXISTS stale_replica CASCADE");
    db.sql("CREATE SCHEMA stale_replica");
    db.sql("CREATE TABLE stale_replica.pop_before_smtp_grants (LIKE public.pop_before_smtp_grants INCLUDING ALL)");
    const std::string replicaInfo =
        std::string(envOrNull("POSTERN_TEST_PG_CONNINFO")) + " options='-csearch_path=stale_replica,public'";
    {
        pg::Pool pool(settings());
        pg::ReadRouter reads(pool, std::make_unique<pg::Pool>(settingsFor(replicaInfo.c_str())), 1000ms, "test");
        PgGrantStore store(pool, grantSettings(600s), &reads);
        BOOST_TEST((store.lookup(addr("192.0.2.9"), nullptr) == core::Answer::No));  // on both
        BOOST_TEST(store.grant(addr("192.0.2.9"), "bob@example.test"));
        core::Grant g;
        const auto answer = store.lookup(addr("192.0.2.9"), &g);
        BOOST_TEST(static_cast<int>(answer) == static_cast<int>(core::Answer::Yes));
        BOOST_TEST(g.user == "bob@example.test");
        BOOST_TEST(reads.counts().replicaReads >= 2u);  // the replica was asked (and missed) each time
    }
    db.sql("DROP SCHEMA stale_replica CASCADE");
}

BOOST_AUTO_TEST_CASE(a_replica_hit_is_taken_unless_the_row_relayed_on_is_due_for_its_stamp,
                     *boost::unit_test::precondition(WithPg())) {
    // The "replica" (the same server, its own grants table first on the search_path) has two
    // users' grants for one address; the primary has none, so an answer from the primary is
    // No. bob's row was stamped a moment ago, alice's never: bob's relay is answered by the
    // replica; alice's needs the stamp (a write), so the primary is asked.
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    db.sql("DROP SCHEMA IF EXISTS nat_replica CASCADE");
    db.sql("CREATE SCHEMA nat_replica");
    db.sql("CREATE TABLE nat_replica.pop_before_smtp_grants (LIKE public.pop_before_smtp_grants INCLUDING ALL)");
    db.sql("INSERT INTO nat_replica.pop_before_smtp_grants (key, user_name, created, expires, last_used) VALUES"
           " ('192.0.2.40', 'bob@example.test', now(), now() + interval '10 minutes', now()),"
           " ('192.0.2.40', 'alice@example.test', now(), now() + interval '20 minutes', NULL)");
    const std::string replicaInfo =
        std::string(envOrNull("POSTERN_TEST_PG_CONNINFO")) + " options='-csearch_path=nat_replica,public'";
    {
        pg::Pool pool(settings());
        pg::ReadRouter reads(pool, std::make_unique<pg::Pool>(settingsFor(replicaInfo.c_str())), 1000ms, "test");
        PgGrantStore store(pool, grantSettings(600s), &reads);
        core::Grant g;
        BOOST_TEST((store.lookup(addr("192.0.2.40"), "bob@example.test", &g) == core::Answer::Yes));
        BOOST_TEST(g.user == "bob@example.test");
        BOOST_TEST((store.lookup(addr("192.0.2.40"), "alice@example.test", &g) == core::Answer::No));
        // Nobody's sender: the replica's pick (alice's, expiring last) is not the sender's own;
        // the sender's own grant may be on the primary only: asked there.
        BOOST_TEST((store.lookup(addr("192.0.2.40"), "eve@example.test", &g) == core::Answer::No));
        // carol logged in a moment ago; her row is on the primary, not yet on the replica
        // (which answers with bob's, not due): the primary answers, with hers.
        db.sql("INSERT INTO public.pop_before_smtp_grants (key, user_name, created, expires, senders) VALUES"
               " ('192.0.2.40', 'carol@example.test', now(), now() + interval '5 minutes', 'carol@example.test')");
        BOOST_TEST((store.lookup(addr("192.0.2.40"), "Carol@Example.Test", &g) == core::Answer::Yes));
        BOOST_TEST(g.user == "carol@example.test");
    }
    db.sql("DROP SCHEMA nat_replica CASCADE");
}

BOOST_AUTO_TEST_CASE(ipv6_prefix_and_mapped_keys, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore store(pool, grantSettings(600s, 64));

    BOOST_TEST(store.grant(addr("2001:db8:1:2::5"), "bob@example.test"));
    BOOST_TEST(db.one("SELECT key FROM pop_before_smtp_grants") == "2001:db8:1:2::/64");
    BOOST_TEST((store.lookup(addr("2001:db8:1:2:ffff:eeee:dddd:1"), nullptr) == core::Answer::Yes));
    BOOST_TEST((store.lookup(addr("2001:db8:1:3::5"), nullptr) == core::Answer::No));

    // IPv4-mapped IPv6 is the IPv4 client: one key for both spellings.
    BOOST_TEST(store.grant(addr("::ffff:192.0.2.9"), "dual@example.test"));
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants WHERE key = '192.0.2.9'") == "1");
    BOOST_TEST((store.lookup(addr("192.0.2.9"), nullptr) == core::Answer::Yes));

    // An exact-address store does not see the /64 grant.
    PgGrantStore exact(pool, grantSettings(600s, 128));
    BOOST_TEST(exact.keyText(addr("2001:db8:1:2::5")) == "2001:db8:1:2::5");
    BOOST_TEST((exact.lookup(addr("2001:db8:1:2::5"), nullptr) == core::Answer::No));
}

BOOST_AUTO_TEST_CASE(concurrent_grants_lookups_and_sweeps, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    // 5000 expired rows, then 4 threads on 2 "nodes" (own pools) grant, look up and sweep
    // at once: nothing fails, and the sweeps together delete each expired row exactly once.
    db.sql("INSERT INTO pop_before_smtp_grants (key, user_name, created, expires)"
           " SELECT '10.9.' || (i / 256) || '.' || (i % 256), 'old' || i || '@example.test',"
           " now() - interval '1 hour', now() - interval '1 second' FROM generate_series(0, 4999) AS i");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgGrantSettings s = grantSettings(600s);
    s.sweepBatch = 100;
    PgGrantStore nodeA(poolA, s), nodeB(poolB, s);

    std::atomic<int> failures{0};
    std::atomic<std::size_t> swept{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            PgGrantStore& store = t % 2 ? nodeB : nodeA;
            auto r = store.sweep();
            if (!r)
                ++failures;
            else
                swept += *r;
            for (int i = 0; i < 100; ++i) {
                const std::string ip = "192.0.2." + std::to_string(i % 25);
                const std::string user = "u" + std::to_string(t) + "@example.test";
                if (!store.grant(addr(ip), user))
                    ++failures;
                core::Grant g;
                // Each thread's user has its own grant for the key (four per address).
                if (store.lookup(addr(ip), user, &g) != core::Answer::Yes || g.user != user)
                    ++failures;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(swept.load() == 5000u);
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants") == "100");
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants WHERE expires <= now()") == "0");
}

BOOST_AUTO_TEST_CASE(revoke_user_and_bounded_cache, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore node(pool, grantSettings(600s));
    BOOST_TEST(node.grant(addr("192.0.2.1"), "bob@example.test"));
    BOOST_TEST(node.grant(addr("192.0.2.2"), "bob@example.test"));
    BOOST_TEST(node.grant(addr("192.0.2.3"), "ann@example.test"));

    // A caching node keeps answering Yes for at most cache_ttl after another node revokes.
    PgGrantStore caching(pool, grantSettings(600s, 128, 400ms));
    const std::string bob = "bob@example.test";  // the cache answers only for the grant's own user
    BOOST_TEST((caching.lookup(addr("192.0.2.1"), bob, nullptr) == core::Answer::Yes));
    auto n = node.revokeUser("bob@example.test");
    BOOST_REQUIRE(n.has_value());
    BOOST_TEST(*n == 2u);
    BOOST_TEST((node.lookup(addr("192.0.2.1"), nullptr) == core::Answer::No));
    BOOST_TEST((node.lookup(addr("192.0.2.2"), nullptr) == core::Answer::No));
    BOOST_TEST((node.lookup(addr("192.0.2.3"), nullptr) == core::Answer::Yes));
    const auto revokedAt = std::chrono::steady_clock::now();
    BOOST_TEST((caching.lookup(addr("192.0.2.1"), bob, nullptr) == core::Answer::Yes));  // stale, within the bound
    BOOST_TEST(eventually([&] { return caching.lookup(addr("192.0.2.1"), bob, nullptr) == core::Answer::No; }, 2000ms));
    BOOST_TEST((std::chrono::steady_clock::now() - revokedAt < 1000ms));
    // No negative caching: a grant made elsewhere is seen at once.
    BOOST_TEST(node.grant(addr("192.0.2.1"), "bob@example.test"));
    BOOST_TEST((caching.lookup(addr("192.0.2.1"), bob, nullptr) == core::Answer::Yes));
}

BOOST_AUTO_TEST_CASE(unreachable_database_is_tempfail) {
    // Runs everywhere: nothing listens on port 1.
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgGrantStore store(pool, grantSettings(600s));
    BOOST_TEST(!store.grant(addr("192.0.2.7"), "bob@example.test"));
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::TempFail));
    BOOST_TEST(!store.sweep().has_value());
    BOOST_TEST(!store.revokeUser("bob@example.test").has_value());
    BOOST_CHECK_THROW(PgGrantStore(pool, grantSettings(0s)), std::invalid_argument);
    BOOST_CHECK_THROW(PgGrantStore(pool, grantSettings(60s, 129)), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(stopped_database_is_tempfail, *boost::unit_test::precondition(WithPgDown())) {
    pg::Pool pool(settingsFor(envOrNull("POSTERN_TEST_PG_DOWN_CONNINFO"), 1));
    PgGrantStore store(pool, grantSettings(600s, 128, 5000ms));
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::TempFail));
    BOOST_TEST(!store.grant(addr("192.0.2.7"), "bob@example.test"));
    // A failed grant is not cached: still TempFail, never Yes.
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::TempFail));
}

BOOST_AUTO_TEST_SUITE_END()
