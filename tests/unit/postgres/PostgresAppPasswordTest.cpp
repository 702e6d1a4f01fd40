// PostgresBackend and app passwords (with a fake executor): the login's one password_query
// binds the id of an app-password-shaped password as $2 and reads the app password's columns;
// a query with only $1 gets only $1; refusals for scope, networks, expiry, revocation and the
// require_app_password flag.
#include "PostgresBackend.h"

#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

namespace postern::plugins::postgres {
namespace {

pg::QueryResult rows(std::vector<pg::Row> r) {
    pg::QueryResult q;
    q.status = r.empty() ? pg::QueryStatus::NoRows : pg::QueryStatus::Ok;
    q.rows = std::move(r);
    return q;
}

struct Fake {
    pg::QueryResult answer;
    std::vector<pg::Params> passwordCalls;
    int statements = 0;

    PostgresBackend::Executor executor() {
        return [this](const pg::Statement& s, const pg::Params& p) {
            ++statements;
            if (s.name == "postern_password") {
                passwordCalls.push_back(p);
                return answer;
            }
            return rows({});
        };
    }
};

const std::string Password = "abcdefgh-" + std::string(24, 'q');

// user, password, enabled, mailbox, senders, require, id, hash, scopes, expires, networks, last used, last ip, revoked
pg::Row row(pg::Value require, pg::Value id, pg::Value scopes = "smtp", pg::Value expires = std::nullopt,
            pg::Value networks = "", pg::Value revoked = std::nullopt) {
    return {"ann@pg.test", "{PLAIN}main", "t", "", "{}", require, id,
            id ? pg::Value("{PLAIN}" + Password) : std::nullopt,
            id ? scopes : std::nullopt, expires, id ? networks : std::nullopt,
            id ? pg::Value("1700000000") : std::nullopt, id ? pg::Value("192.0.2.1") : std::nullopt, revoked};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(postgres_app_passwords)

BOOST_AUTO_TEST_CASE(theAppPasswordComesWithTheLoginsOneQuery) {
    Fake f;
    f.answer = rows({row("f", "abcdefgh")});
    PostgresBackend b(PostgresConfig::fromMap({{"conninfo", "x"}, {"senders_query", ""}}), f.executor());
    auto a = b.authenticate("ann@pg.test", Password, "smtp", "192.0.2.7");
    BOOST_TEST(f.statements == 1);
    BOOST_REQUIRE(f.passwordCalls.size() == 1u);
    BOOST_REQUIRE(f.passwordCalls[0].size() == 2u);
    BOOST_TEST(f.passwordCalls[0][1].value() == "abcdefgh");
    BOOST_TEST(a.appPasswordId == "abcdefgh");
    BOOST_TEST(a.record.passwordHash == "{PLAIN}" + Password);
    BOOST_TEST(a.refusal == "");
    BOOST_TEST(a.appPasswordLastUsed == 1700000000);
    BOOST_TEST(a.appPasswordLastIp == "192.0.2.1");

    // Not app-password-shaped: $2 is "", the main hash is returned.
    f.answer = rows({row("f", std::nullopt)});
    a = b.authenticate("ann@pg.test", "main", "smtp", "192.0.2.7");
    BOOST_TEST(f.passwordCalls[1][1].value() == "");
    BOOST_TEST(a.record.passwordHash == "{PLAIN}main");
    BOOST_TEST(a.appPasswordId == "");
    BOOST_TEST(a.refusal == "");
}

BOOST_AUTO_TEST_CASE(aQueryWithoutDollarTwoGetsOneParameter) {
    Fake f;
    f.answer = rows({{"ann@pg.test", "{PLAIN}main", "t"}});
    PostgresBackend b(PostgresConfig::fromMap({{"conninfo", "x"},
                                               {"password_query", "SELECT login, secret, active FROM t WHERE login = $1"}}),
                      f.executor());
    auto a = b.authenticate("ann@pg.test", Password, "smtp", "192.0.2.7");
    BOOST_TEST(f.passwordCalls.at(0).size() == 1u);
    BOOST_TEST(a.record.passwordHash == "{PLAIN}main");
    BOOST_TEST(a.refusal == "");
}

BOOST_AUTO_TEST_CASE(refusals) {
    Fake f;
    PostgresBackend b(PostgresConfig::fromMap({{"conninfo", "x"}, {"senders_query", ""}}), f.executor());
    f.answer = rows({row("f", "abcdefgh", "smtp")});
    BOOST_TEST(b.authenticate("ann@pg.test", Password, "pop3", "192.0.2.7").refusal ==
               "app password abcdefgh is not valid for pop3 (scope smtp)");
    f.answer = rows({row("f", "abcdefgh", "smtp,pop3", "1000")});
    BOOST_TEST(b.authenticate("ann@pg.test", Password, "pop3", "192.0.2.7").refusal ==
               "app password abcdefgh has expired");
    f.answer = rows({row("f", "abcdefgh", "smtp", std::nullopt, "10.0.0.0/8")});
    auto a = b.authenticate("ann@pg.test", Password, "smtp", "192.0.2.7");
    BOOST_TEST(a.refusal == "app password abcdefgh is not valid from 192.0.2.7 (networks 10.0.0.0/8)");
    BOOST_TEST(a.appPasswordIpBound);
    f.answer = rows({row("f", "abcdefgh", "smtp", std::nullopt, "", "1700000001")});
    BOOST_TEST(b.authenticate("ann@pg.test", Password, "smtp", "192.0.2.7").refusal ==
               "app password abcdefgh is revoked");
    f.answer = rows({row("t", std::nullopt)});
    BOOST_TEST(b.authenticate("ann@pg.test", "main", "smtp", "192.0.2.7").refusal ==
               "account requires an app password (main password refused)");
    // The flag does not refuse an app password.
    f.answer = rows({row("t", "abcdefgh")});
    BOOST_TEST(b.authenticate("ann@pg.test", Password, "smtp", "192.0.2.7").refusal == "");
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::plugins::postgres
