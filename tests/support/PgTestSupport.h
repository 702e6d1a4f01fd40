// Shared scaffolding of the C++ tests that run against a real PostgreSQL: the database is
// given by POSTERN_TEST_PG_CONNINFO (tests/e2e/test_cluster_stores.py starts one and runs the
// binaries with it set); without it those cases are skipped with a clear message.
#pragma once

#include "pg/Connection.h"
#include "pg/ConnectSettings.h"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdlib>
#include <string>

namespace postern::testing {

inline const char* envOrNull(const char* name) {
    const char* v = std::getenv(name);
    return v && *v ? v : nullptr;
}

// Boost.Test precondition: run only when a live database is given.
struct WithPg {
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        boost::test_tools::assertion_result r(envOrNull("POSTERN_TEST_PG_CONNINFO") != nullptr);
        r.message() << "POSTERN_TEST_PG_CONNINFO is not set: skipped (tests/e2e/test_cluster_stores.py runs these)";
        return r;
    }
};

// Boost.Test precondition: run only when a stopped database's conninfo is given.
struct WithPgDown {
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        boost::test_tools::assertion_result r(envOrNull("POSTERN_TEST_PG_DOWN_CONNINFO") != nullptr);
        r.message() << "POSTERN_TEST_PG_DOWN_CONNINFO is not set: skipped (tests/e2e/test_cluster_stores.py runs it)";
        return r;
    }
};

inline pg::ConnectSettings settingsFor(const char* conninfo, std::size_t poolSize = 4) {
    using namespace std::chrono_literals;
    pg::ConnectSettings s;
    s.conninfo = conninfo;
    s.poolSize = poolSize;
    s.connectTimeout = 2s;
    s.statementTimeout = 10s;
    s.applicationName = "postern-test";
    return s;
}

inline pg::ConnectSettings settings(std::size_t poolSize = 4) {
    return settingsFor(envOrNull("POSTERN_TEST_PG_CONNINFO"), poolSize);
}

// Direct SQL for set-up and for checking rows (the observable effect).
struct Db {
    pg::ConnectionPtr c;
    Db() {
        std::string error;
        c = pg::Connection::open(settings(), error);
        BOOST_REQUIRE_MESSAGE(c, "connect: " + error);
    }
    pg::QueryResult sql(const std::string& q, const pg::Params& p = {}) {
        pg::QueryResult r = c->execParams(q, p);
        BOOST_REQUIRE_MESSAGE(!r.failed(), q + ": " + r.error);
        return r;
    }
    std::string one(const std::string& q, const pg::Params& p = {}) {
        pg::QueryResult r = sql(q, p);
        BOOST_REQUIRE(r.rows.size() == 1);
        return r.rows[0][0].value_or("NULL");
    }
};

}  // namespace postern::testing
