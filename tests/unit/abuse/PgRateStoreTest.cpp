// PgRateStore against a real PostgreSQL (see tests/unit/grants/PgGrantStoreTest.cpp for
// how the database is chosen; skipped without POSTERN_TEST_PG_CONNINFO).
#include "abuse/MemoryRateStore.h"
#include "abuse/PgRateStore.h"

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
using Kind = RateStoreResult::Kind;

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_rate_store)

BOOST_AUTO_TEST_CASE(all_or_nothing, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE rate_counters");
    pg::Pool pool(settings(2));
    PgRateStore store(pool);
    const std::vector<RateRequest> send{{"user:bob", 1, 5, 0}, {"ip:192.0.2.7", 1, 3, 0}};
    for (int i = 0; i < 3; ++i)
        BOOST_TEST((store.tryAdd(send, T0 + std::chrono::seconds(i)).kind == Kind::Added));
    RateStoreResult r = store.tryAdd(send, T0 + 10s);
    BOOST_TEST((r.kind == Kind::Limited));
    BOOST_TEST(r.index == 1u);
    BOOST_TEST((r.window == RateWindow::Hour));
    // The user's counter was not consumed by the refused request.
    BOOST_TEST(store.get("user:bob", T0 + 10s)->lastHour == 3u);
    BOOST_TEST(store.get("ip:192.0.2.7", T0 + 10s)->lastHour == 3u);
    BOOST_TEST(db.one("SELECT sum(count) FROM rate_counters WHERE key = 'user:bob'") == "3");

    // One key twice in a request: the amounts add up before the comparison.
    r = store.tryAdd({{"k2", 2, 3, 0}, {"k2", 2, 3, 0}}, T0);
    BOOST_TEST((r.kind == Kind::Limited));
    BOOST_TEST(r.index == 1u);
    BOOST_TEST(store.get("k2", T0)->lastHour == 0u);

    // Day limit.
    BOOST_TEST((store.tryAdd({{"d", 4, 0, 5}}, T0).kind == Kind::Added));
    r = store.tryAdd({{"d", 2, 0, 5}}, T0 + 3h);
    BOOST_TEST((r.kind == Kind::Limited));
    BOOST_TEST((r.window == RateWindow::Day));
}

BOOST_AUTO_TEST_CASE(same_windows_as_the_memory_store, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE rate_counters");
    pg::Pool pool(settings(2));
    PgRateStore pgStore(pool);
    MemoryRateStore memStore;
    // Events spread over two days, limits tight enough to be hit; every answer and count
    // must match the memory store's sliding windows exactly.
    std::vector<std::chrono::minutes> at;
    for (int m = 0; m < 60 * 50; m += 37)
        at.emplace_back(m);
    for (auto m : at) {
        const postern::core::TimePoint now = T0 + m;
        const std::vector<RateRequest> req{{"u", 3, 20, 60}, {"i", 2, 12, 0}};
        RateStoreResult p = pgStore.tryAdd(req, now);
        RateStoreResult q = memStore.tryAdd(req, now);
        BOOST_TEST((p.kind == q.kind), "at minute " << m.count());
        BOOST_TEST(p.index == q.index);
        BOOST_TEST((p.window == q.window));
        // An add reports each key's counts with it included (schema 009): the memory
        // store's counts now.
        if (p.kind == RateStoreResult::Kind::Added) {
            BOOST_REQUIRE(p.counts.size() == 2u);
            for (std::size_t i = 0; i < 2; ++i) {
                auto mc = memStore.get(req[i].key, now);
                BOOST_TEST(p.counts[i].lastHour == mc->lastHour, req[i].key << " reported hour at minute " << m.count());
                BOOST_TEST(p.counts[i].lastDay == mc->lastDay, req[i].key << " reported day at minute " << m.count());
            }
        } else {
            BOOST_TEST(p.counts.empty());
        }
        for (const char* k : {"u", "i"}) {
            auto pc = pgStore.get(k, now + 1min);
            auto mc = memStore.get(k, now + 1min);
            BOOST_REQUIRE(pc.has_value());
            BOOST_TEST(pc->lastHour == mc->lastHour, k << " hour at minute " << m.count());
            BOOST_TEST(pc->lastDay == mc->lastDay, k << " day at minute " << m.count());
        }
    }
    // Everything older than a day and an hour is swept; what still counts stays.
    auto end = T0 + at.back();
    auto before = pgStore.get("u", end);
    auto swept = pgStore.sweep(end, 5);
    BOOST_REQUIRE(swept.has_value());
    BOOST_TEST(*swept > 0u);
    BOOST_TEST(pgStore.get("u", end)->lastDay == before->lastDay);
}

BOOST_AUTO_TEST_CASE(concurrent_nodes_never_exceed_a_limit, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE rate_counters");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgRateStore nodeA(poolA), nodeB(poolB);
    std::atomic<int> added{0}, limited{0}, failed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            PgRateStore& s = t % 2 ? nodeB : nodeA;
            for (int i = 0; i < 40; ++i) {
                // Overlapping key sets in different orders: locks must not deadlock.
                std::vector<RateRequest> req = t < 2 ? std::vector<RateRequest>{{"user:x", 1, 100, 0}, {"ip:y", 1, 0, 0}}
                                                     : std::vector<RateRequest>{{"ip:y", 1, 0, 0}, {"user:x", 1, 100, 0}};
                switch (s.tryAdd(req, T0).kind) {
                case Kind::Added: ++added; break;
                case Kind::Limited: ++limited; break;
                case Kind::TempFail: ++failed; break;
                }
            }
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(failed.load() == 0);
    BOOST_TEST(added.load() == 100);
    BOOST_TEST(limited.load() == 60);
    BOOST_TEST(nodeA.get("user:x", T0)->lastHour == 100u);
    BOOST_TEST(nodeB.get("ip:y", T0)->lastHour == 100u);
}

BOOST_AUTO_TEST_CASE(unreachable_database_is_tempfail) {
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgRateStore store(pool);
    BOOST_TEST((store.tryAdd({{"k", 1, 10, 10}}, T0).kind == Kind::TempFail));
    BOOST_TEST(!store.get("k", T0).has_value());
}

BOOST_AUTO_TEST_CASE(stopped_database_is_tempfail, *boost::unit_test::precondition(WithPgDown())) {
    pg::Pool pool(settingsFor(envOrNull("POSTERN_TEST_PG_DOWN_CONNINFO"), 1));
    PgRateStore store(pool);
    BOOST_TEST((store.tryAdd({{"k", 1, 10, 10}}, T0).kind == Kind::TempFail));
    BOOST_TEST(!store.get("k", T0).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
