// PostgresBackend::probe() (readiness): a trivial query through the executor (the pool in
// production): Ok when it returns its row, TempFail with the error when it fails.
#include "PostgresBackend.h"

#include <boost/test/unit_test.hpp>

#include <string>

namespace postern::plugins::postgres {

BOOST_AUTO_TEST_SUITE(postgres_probe)

BOOST_AUTO_TEST_CASE(probe_runs_select_1_through_the_executor) {
    std::string ran;
    pg::QueryResult answer;
    answer.status = pg::QueryStatus::Ok;
    answer.rows = {{"1"}};
    PostgresBackend b(PostgresConfig::fromMap({{"conninfo", "dbname=x"}}),
                      [&](const pg::Statement& s, const pg::Params&) {
                          ran = s.sql;
                          return answer;
                      });
    auto ok = b.probe();
    BOOST_TEST(static_cast<int>(ok.status) == static_cast<int>(api::Status::Ok));
    BOOST_TEST(ran == "SELECT 1");

    answer = pg::QueryResult::failure("connection to server timed out", "08006");
    auto down = b.probe();
    BOOST_TEST(static_cast<int>(down.status) == static_cast<int>(api::Status::TempFail));
    BOOST_TEST(down.detail == "postgres: connection to server timed out (SQLSTATE 08006)");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::plugins::postgres
