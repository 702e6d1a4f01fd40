// Tests for server/pg without a database: ConnectSettings parsing, the password file rules,
// and the pool answering Error quickly (not hanging) when nothing listens. With
// POSTERN_TEST_PG_CONNINFO (tests/e2e/test_cluster_stores.py), pg_pool_live: what a server
// restart leaves in the pool.
#include "pg/ConnectSettings.h"
#include "pg/Pool.h"

#include "support/PgTestSupport.h"

#include <Poco/AutoPtr.h>
#include <Poco/Channel.h>
#include <Poco/Logger.h>
#include <Poco/Message.h>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>

namespace postern::pg {
namespace {

BOOST_AUTO_TEST_SUITE(pg_pool)

BOOST_AUTO_TEST_CASE(duration_keys) {
    // The syntax is core::parseDuration's; the error names the key.
    auto with = [](const char* key, const char* value) { return ConnectSettings::fromParams({{"conninfo", "x"}, {key, value}}); };
    BOOST_TEST(with("connect_timeout", "5s").connectTimeout.count() == 5000);
    BOOST_TEST(with("connect_timeout", "5").connectTimeout.count() == 5000);
    BOOST_TEST(with("statement_timeout", "250ms").statementTimeout.count() == 250);
    BOOST_TEST(with("statement_timeout", "2m").statementTimeout.count() == 120000);
    BOOST_TEST(with("statement_timeout", "1d").statementTimeout.count() == 86400000);
    for (const char* bad : {"-1s", "5 parsecs", ""}) {
        std::string error;
        try {
            with("statement_timeout", bad);
        } catch (const std::invalid_argument& e) {
            error = e.what();
        }
        BOOST_TEST(error.rfind("statement_timeout: bad duration '", 0) == 0, error);
    }
    BOOST_CHECK_THROW(with("connect_timeout", "0s"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(settings_defaults_and_values) {
    auto s = ConnectSettings::fromParams({{"conninfo", " host=a,b target_session_attrs=read-write "}, {"other", "x"}});
    BOOST_TEST(s.conninfo == "host=a,b target_session_attrs=read-write");  // passed through
    BOOST_TEST(s.poolSize == 4u);
    BOOST_TEST(s.connectTimeout.count() == 5000);
    BOOST_TEST(s.statementTimeout.count() == 5000);
    s = ConnectSettings::fromParams({{"conninfo", "x"}, {"pool_size", "9"}, {"statement_timeout", "0"}});
    BOOST_TEST(s.poolSize == 9u);
    BOOST_TEST(s.statementTimeout.count() == 0);
    BOOST_CHECK_THROW(ConnectSettings::fromParams({{"conninfo", "x"}, {"pool_size", "4x"}}), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(password_file_must_be_private) {
    char path[] = "/tmp/postern-pg-pwXXXXXX";
    int fd = ::mkstemp(path);
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::write(fd, "s3cret\nsecond line\n", 19) == 19);
    ::close(fd);
    ::chmod(path, 0600);
    BOOST_TEST(readPasswordFile(path) == "s3cret");
    ::chmod(path, 0640);
    BOOST_CHECK_THROW(readPasswordFile(path), std::invalid_argument);
    ::chmod(path, 0604);
    BOOST_CHECK_THROW(readPasswordFile(path), std::invalid_argument);
    ::unlink(path);
    BOOST_CHECK_THROW(readPasswordFile(path), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(unreachable_database_is_a_quick_error) {
    ConnectSettings s;
    // Port 1 on loopback: refused at once. The pool must answer Error, not hang or throw.
    s.conninfo = "host=127.0.0.1 port=1 dbname=x user=x";
    s.poolSize = 2;
    s.connectTimeout = std::chrono::milliseconds(2000);
    Pool pool(s);
    auto t0 = std::chrono::steady_clock::now();
    QueryResult r = pool.execute({"q", "SELECT $1"}, {std::string("a")});
    BOOST_TEST(r.failed());
    BOOST_TEST(r.sqlState == "08001");
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)));
    BOOST_TEST(pool.openConnections() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()

struct LogLines : Poco::Channel {
    std::mutex mutex;
    std::vector<std::string> lines;
    void log(const Poco::Message& m) override {
        std::lock_guard lock(mutex);
        lines.push_back(m.getText());
    }
};

BOOST_AUTO_TEST_SUITE(pg_pool_live)

// After a restart every pooled connection is stale. A caller that meets one gets its answer
// over a fresh connection; a caller doing the same at that moment must not be told "database
// unavailable" because the first one's stale connection marked the pool down (a cluster node
// answered 451 to a relay with a valid grant that way, PostgreSQL up).
BOOST_AUTO_TEST_CASE(stale_connections_after_a_restart_cost_nothing, *boost::unit_test::precondition(testing::WithPg())) {
    ConnectSettings s = testing::settings(2);
    s.applicationName = "postern-pool-test";
    Pool pool(s);
    // Both slots open: two statements at once.
    const Statement sleep{"pool_test_sleep", "SELECT pg_sleep(0.3)"};
    std::thread other([&] { pool.execute(sleep, {}); });
    pool.execute(sleep, {});
    other.join();
    BOOST_REQUIRE(pool.openConnections() == 2u);
    testing::Db db;
    db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'postern-pool-test'");
    for (int i = 0; i < 100 && db.one("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                      "'postern-pool-test'") != "0";
         ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));

    Poco::AutoPtr<LogLines> log(new LogLines);
    Poco::Logger::get("postern.pg").setChannel(log);
    const Statement one{"pool_test_one", "SELECT 1"};
    std::atomic<int> answered{0};
    std::thread a([&] { answered += pool.execute(one, {}).failed() ? 0 : 1; });
    std::thread b([&] { answered += pool.execute(one, {}).failed() ? 0 : 1; });
    a.join();
    b.join();
    Poco::Logger::get("postern.pg").setChannel(nullptr);
    BOOST_TEST(answered == 2);
    for (const auto& line : log->lines) BOOST_TEST(line.find("event=pg.down") == std::string::npos, line);
}

// A caller's function that throws inside withConnection (bad_alloc building a result, say)
// must not keep its slot (after pool_size of them every call would wait connect_timeout and
// fail "no free database connection"), nor give back a connection left inside a transaction.
BOOST_AUTO_TEST_CASE(a_throw_inside_the_pool_gives_the_slot_back, *boost::unit_test::precondition(testing::WithPg())) {
    ConnectSettings s = testing::settings(1);
    s.applicationName = "postern-pool-throw";
    Pool pool(s);
    for (int i = 0; i < 3; ++i) {
        BOOST_CHECK_THROW(pool.withConnection([](Connection& c) -> QueryResult {
            BOOST_REQUIRE(!c.exec("BEGIN").failed());
            BOOST_REQUIRE(!c.exec("CREATE TEMP TABLE pool_throw (x int)").failed());
            throw std::bad_alloc();
        }),
                          std::bad_alloc);
    }
    const auto started = std::chrono::steady_clock::now();
    const Statement one{"pool_throw_one", "SELECT 1"};
    QueryResult r = pool.execute(one, {});
    BOOST_TEST(!r.failed(), r.error);
    const bool waited = std::chrono::steady_clock::now() - started >= s.connectTimeout;
    BOOST_TEST(!waited);  // no wait for a slot
    // The connection it threw on was closed, not reused: no session is left in a transaction,
    // and the temporary table of the aborted transaction is not visible to the next caller.
    testing::Db db;
    BOOST_TEST(db.one("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'postern-pool-throw' "
                      "AND state LIKE 'idle in transaction%'") == "0");
    QueryResult seen = pool.withConnection([](Connection& c) { return c.exec("SELECT to_regclass('pool_throw') IS NULL"); });
    BOOST_TEST_REQUIRE(!seen.failed(), seen.error);
    BOOST_TEST(seen.rows.at(0).at(0).value_or("") == "t");
    BOOST_TEST(pool.openConnections() <= 1u);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace postern::pg
