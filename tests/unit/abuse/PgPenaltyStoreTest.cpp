// PgPenaltyStore against a real PostgreSQL (see tests/unit/grants/PgGrantStoreTest.cpp for
// how the database is chosen; skipped without POSTERN_TEST_PG_CONNINFO).
#include "abuse/MemoryPenaltyStore.h"
#include "abuse/PgPenaltyStore.h"

#include "pg/Connection.h"

#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

using namespace postern;
using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {

using namespace postern::testing;



const postern::core::TimePoint T0 = postern::core::TimePoint(1700000000s);

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_penalty_store)

BOOST_AUTO_TEST_CASE(counters_are_shared_between_nodes, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE auth_penalties");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgPenaltyStore nodeA(poolA), nodeB(poolB);
    const auto window = 15min;

    auto c = nodeA.increment("ip:192.0.2.7", T0, window);
    BOOST_REQUIRE(c.has_value());
    BOOST_TEST(c->failures == 1u);
    BOOST_TEST((c->expires == T0 + window));
    c = nodeB.increment("ip:192.0.2.7", T0 + 1s, window);
    BOOST_REQUIRE(c.has_value());
    BOOST_TEST(c->failures == 2u);  // node B counts on from node A's failure
    BOOST_TEST((c->expires == T0 + window));  // within the window of the first failure
    c = nodeA.get("ip:192.0.2.7", T0 + 2s);
    BOOST_REQUIRE(c.has_value());
    BOOST_TEST(c->failures == 2u);
    BOOST_TEST(db.one("SELECT failures FROM auth_penalties WHERE key = 'ip:192.0.2.7'") == "2");
    // Another key is independent.
    c = nodeA.get("user:bob@example.test", T0);
    BOOST_REQUIRE(c.has_value());
    BOOST_TEST(c->failures == 0u);

    // Window: counted from the first failure (no block threshold here); once it passes, the
    // count starts again at 1.
    const postern::core::TimePoint expiry = T0 + window;
    c = nodeA.get("ip:192.0.2.7", expiry - 1ms);
    BOOST_TEST(c->failures == 2u);
    c = nodeB.get("ip:192.0.2.7", expiry);
    BOOST_TEST(c->failures == 0u);
    c = nodeA.increment("ip:192.0.2.7", expiry, window);
    BOOST_TEST(c->failures == 1u);
    BOOST_TEST((c->expires == expiry + window));

    BOOST_TEST(nodeB.reset("ip:192.0.2.7"));
    BOOST_TEST(nodeA.get("ip:192.0.2.7", expiry)->failures == 0u);
    BOOST_TEST(db.one("SELECT count(*) FROM auth_penalties") == "0");
}

// Both counters of a login in one statement: the same answers as two get() calls.
BOOST_AUTO_TEST_CASE(get_pair_reads_both_keys_in_one_statement, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE auth_penalties");
    pg::Pool pool(settings(2));
    PgPenaltyStore store(pool);
    const auto window = 15min;
    BOOST_REQUIRE(store.increment("ip:192.0.2.7", T0, window));
    BOOST_REQUIRE(store.increment("ip:192.0.2.7", T0, window));
    BOOST_REQUIRE(store.increment("user:bob@example.test", T0 + 1s, window));
    auto both = store.getPair("ip:192.0.2.7", "user:bob@example.test", T0 + 2s);
    BOOST_REQUIRE(both.has_value());
    BOOST_TEST(both->first.failures == 2u);
    BOOST_TEST((both->first.expires == T0 + window));
    BOOST_TEST(both->second.failures == 1u);
    BOOST_TEST((both->second.expires == T0 + 1s + window));
    // Order of the arguments, not of the rows; "" = not asked; expired = 0.
    auto swapped = store.getPair("user:bob@example.test", "ip:192.0.2.7", T0 + 2s);
    BOOST_TEST(swapped->first.failures == 1u);
    BOOST_TEST(swapped->second.failures == 2u);
    auto one = store.getPair("ip:192.0.2.7", "", T0 + 2s);
    BOOST_TEST(one->first.failures == 2u);
    BOOST_TEST(one->second.failures == 0u);
    auto later = store.getPair("ip:192.0.2.7", "user:bob@example.test", T0 + window + 500ms);
    BOOST_TEST(later->first.failures == 0u);
    BOOST_TEST(later->second.failures == 1u);
}

BOOST_AUTO_TEST_CASE(same_answers_as_the_memory_store, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE auth_penalties");
    pg::Pool pool(settings(2));
    PgPenaltyStore pgStore(pool);
    MemoryPenaltyStore memStore;
    const std::vector<std::pair<std::string, std::chrono::seconds>> steps{
        {"a", 0s},   {"a", 10s},  {"b", 20s},  {"a", 30s},  {"a", 50s},  {"a", 69s},  {"a", 130s},
        {"b", 200s}, {"a", 300s}, {"a", 301s}, {"a", 340s}, {"a", 355s}, {"a", 390s}, {"a", 420s}};
    // With no block threshold, and with thresholds the counter reaches (then it holds).
    for (std::uint32_t hold : {0u, 2u, 3u}) {
        const std::string prefix = std::to_string(hold) + ":";
        for (const auto& [name, at] : steps) {
            const std::string key = prefix + name;
            auto p = pgStore.increment(key, T0 + at, 60s, hold);
            auto m = memStore.increment(key, T0 + at, 60s, hold);
            BOOST_REQUIRE(p.has_value());
            BOOST_TEST(p->failures == m->failures, key << " at " << at.count() << "s");
            BOOST_TEST((p->expires == m->expires), key << " at " << at.count() << "s");
            for (const char* k : {"a", "b"}) {  // read at the same moment (the memory store drops what expired)
                BOOST_TEST(pgStore.get(prefix + k, T0 + at)->failures == memStore.get(prefix + k, T0 + at)->failures);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(concurrent_increments_lose_nothing, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE auth_penalties");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgPenaltyStore nodeA(poolA), nodeB(poolB);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            PgPenaltyStore& s = t % 2 ? nodeB : nodeA;
            for (int i = 0; i < 50; ++i)
                if (!s.increment("user:hot@example.test", T0 + std::chrono::milliseconds(i), 15min))
                    ++failures;
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(nodeA.get("user:hot@example.test", T0)->failures == 200u);
}

BOOST_AUTO_TEST_CASE(sweep_removes_only_expired, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE auth_penalties");
    pg::Pool pool(settings(2));
    PgPenaltyStore store(pool);
    for (int i = 0; i < 30; ++i)
        store.increment("old" + std::to_string(i), T0, 1min);
    store.increment("live", T0 + 5min, 15min);
    auto n = store.sweep(T0 + 2min, 7);
    BOOST_REQUIRE(n.has_value());
    BOOST_TEST(*n == 30u);
    BOOST_TEST(db.one("SELECT string_agg(key, ',') FROM auth_penalties") == "live");
}

BOOST_AUTO_TEST_CASE(unreachable_database_is_a_failure_not_zero) {
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgPenaltyStore store(pool);
    BOOST_TEST(!store.increment("ip:192.0.2.7", T0, 15min).has_value());
    BOOST_TEST(!store.get("ip:192.0.2.7", T0).has_value());
    BOOST_TEST(!store.reset("ip:192.0.2.7"));
}

BOOST_AUTO_TEST_CASE(stopped_database_is_a_failure_not_zero, *boost::unit_test::precondition(WithPgDown())) {
    pg::Pool pool(settingsFor(envOrNull("POSTERN_TEST_PG_DOWN_CONNINFO"), 1));
    PgPenaltyStore store(pool);
    BOOST_TEST(!store.increment("ip:192.0.2.7", T0, 15min).has_value());
    BOOST_TEST(!store.get("ip:192.0.2.7", T0).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
