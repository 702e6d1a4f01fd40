// pg::ReadRouter without a database: no replica = every read on the primary; a replica that
// cannot be reached is never the answer (the primary's answer, even its error, is).
#include "pg/ReadRouter.h"

#include <boost/test/unit_test.hpp>

#include <chrono>

namespace postern::pg {
namespace {

ConnectSettings unreachable(const char* port) {
    ConnectSettings s;
    // Loopback ports 1 and 2: refused at once.
    s.conninfo = std::string("host=127.0.0.1 dbname=x user=x port=") + port;
    s.poolSize = 1;
    s.connectTimeout = std::chrono::milliseconds(2000);
    return s;
}

BOOST_AUTO_TEST_SUITE(pg_read_router)

BOOST_AUTO_TEST_CASE(no_replica_reads_the_primary) {
    Pool primary(unreachable("1"));
    ReadRouter router(primary, nullptr, std::chrono::milliseconds(1000), "test");
    BOOST_TEST(!router.hasReplica());
    BOOST_TEST(!router.readReplica({"q", "SELECT 1"}, {}, true).has_value());
    QueryResult r = router.read({"q", "SELECT 1"}, {}, false);
    BOOST_TEST(r.failed());
    BOOST_TEST(r.sqlState == "08001");  // the primary's own error
    BOOST_TEST(router.counts().primaryReads == 1u);
    BOOST_TEST(router.counts().replicaReads == 0u);
}

BOOST_AUTO_TEST_CASE(down_replica_falls_back_to_the_primary) {
    Pool primary(unreachable("1"));
    ReadRouter router(primary, std::make_unique<Pool>(unreachable("2")), std::chrono::milliseconds(1000), "test");
    BOOST_TEST(router.hasReplica());
    BOOST_TEST(router.lagCheckInterval().count() == 500);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) {
        QueryResult r = router.read({"q", "SELECT 1"}, {}, true);
        BOOST_TEST(r.failed());  // the primary is down too: an error, never rows or "no rows"
    }
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)));
    BOOST_TEST(router.counts().replicaReads == 0u);
    BOOST_TEST(router.counts().primaryReads == 3u);
    BOOST_TEST(router.counts().fallbacks == 3u);
}

BOOST_AUTO_TEST_CASE(lag_check_interval_is_bounded) {
    Pool primary(unreachable("1"));
    auto with = [&](long ms) {
        return ReadRouter(primary, std::make_unique<Pool>(unreachable("2")), std::chrono::milliseconds(ms), "t")
            .lagCheckInterval()
            .count();
    };
    BOOST_TEST(with(0) == 100);
    BOOST_TEST(with(1000) == 500);
    BOOST_TEST(with(60000) == 1000);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace postern::pg
