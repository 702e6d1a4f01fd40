// Tests for PostgresBackend's mapping of query results to answers (with a fake executor):
// ok / unknown / disabled / ambiguous / errors / bad values, aliases, domains, and config keys.
#include "PostgresBackend.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

namespace postern::plugins::postgres {
namespace {

using api::Status;

pg::QueryResult rows(std::vector<pg::Row> r) {
    pg::QueryResult q;
    q.status = r.empty() ? pg::QueryStatus::NoRows : pg::QueryStatus::Ok;
    q.rows = std::move(r);
    return q;
}

pg::QueryResult error(const std::string& state) {
    return pg::QueryResult::failure("boom", state);
}

// Answers each statement by name; records the bound parameters.
struct Fake {
    std::map<std::string, pg::QueryResult> answers;
    std::vector<std::pair<std::string, pg::Params>> calls;

    PostgresBackend::Executor executor() {
        return [this](const pg::Statement& s, const pg::Params& p) {
            calls.emplace_back(s.name, p);
            auto it = answers.find(s.name);
            return it == answers.end() ? rows({}) : it->second;
        };
    }
};

PostgresConfig config() {
    return PostgresConfig::fromMap({{"conninfo", "dbname=x"}});
}

BOOST_AUTO_TEST_SUITE(postgres_backend)

BOOST_AUTO_TEST_CASE(authenticate_ok_returns_hash_senders_and_mailbox) {
    Fake f;
    f.answers["postern_password"] = rows({{"Ann@Pg.Test", "{PLAIN}x", "t", "pg.test/box"}});
    f.answers["postern_senders"] = rows({{"team@pg.test"}, {"a@pg.test, b@pg.test"}});
    PostgresBackend b(config(), f.executor());
    auto a = b.authenticate("ANN@pg.test", "pw", "smtp", "127.0.0.1");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(Status::Ok));
    BOOST_TEST(!a.verified);
    BOOST_TEST(a.record.user == "ann@pg.test");
    BOOST_TEST(a.record.passwordHash == "{PLAIN}x");
    BOOST_TEST(a.record.mailbox == "pg.test/box");
    std::vector<std::string> senders{"ann@pg.test", "team@pg.test", "a@pg.test", "b@pg.test"};
    BOOST_TEST(a.record.senderAddresses == senders, boost::test_tools::per_element());
    BOOST_REQUIRE(!f.calls.empty());
    BOOST_TEST(f.calls[0].second.at(0).value() == "ann@pg.test");  // lower-cased, bound
}

struct AuthRow {
    const char* name;
    pg::QueryResult password;
    Status expected;
};

std::ostream& operator<<(std::ostream& o, const AuthRow& r) {
    return o << r.name;
}

const AuthRow AuthRows[] = {
    {"no rows", rows({}), Status::UnknownUser},
    {"disabled", rows({{"a@x", "{PLAIN}x", "f"}}), Status::Disabled},
    {"null password", rows({{"a@x", std::nullopt, "t"}}), Status::Disabled},
    {"two rows", rows({{"a@x", "{PLAIN}x", "t"}, {"a@x", "{PLAIN}y", "t"}}), Status::TempFail},
    {"enabled not boolean", rows({{"a@x", "{PLAIN}x", "maybe"}}), Status::TempFail},
    {"enabled null", rows({{"a@x", "{PLAIN}x", std::nullopt}}), Status::TempFail},
    {"too few columns", rows({{"a@x", "{PLAIN}x"}}), Status::TempFail},
    {"connection error", error("08006"), Status::TempFail},
    {"timeout", error("57014"), Status::TempFail},
    {"sql error", error("42703"), Status::TempFail},
    {"active 1", rows({{"a@x", "{PLAIN}x", "1"}}), Status::Ok},
};

BOOST_DATA_TEST_CASE(authenticate_outcomes, boost::unit_test::data::make(AuthRows), row) {
    Fake f;
    f.answers["postern_password"] = row.password;
    PostgresBackend b(config(), f.executor());
    BOOST_TEST(static_cast<int>(b.authenticate("a@x", "pw", "smtp", "").status) == static_cast<int>(row.expected));
}

BOOST_AUTO_TEST_CASE(senders_failure_is_tempfail) {
    Fake f;
    f.answers["postern_password"] = rows({{"a@x", "{PLAIN}x", "t"}});
    f.answers["postern_senders"] = error("57P01");
    PostgresBackend b(config(), f.executor());
    auto a = b.authenticate("a@x", "pw", "smtp", "");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(Status::TempFail));
    BOOST_TEST(a.record.passwordHash.empty());
}

// A 5th password_query column carries the senders (text[] as PostgreSQL prints it, or a
// comma list): one statement per login, senders_query not run.
BOOST_AUTO_TEST_CASE(password_query_with_senders_column_needs_no_second_statement) {
    Fake f;
    f.answers["postern_password"] =
        rows({{"ann@pg.test", "{PLAIN}x", "t", "", "{Team@pg.test,\"odd,one\"@pg.test,NULL,\"NULL\"}"}});
    f.answers["postern_senders"] = error("57P01");  // would fail the login if it were asked
    PostgresBackend b(config(), f.executor());
    auto a = b.authenticate("ann@pg.test", "pw", "smtp", "");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(Status::Ok));
    std::vector<std::string> senders{"ann@pg.test", "team@pg.test", "odd,one@pg.test", "null"};
    BOOST_TEST(a.record.senderAddresses == senders, boost::test_tools::per_element());
    BOOST_TEST(f.calls.size() == 1u);

    Fake g;
    g.answers["postern_password"] = rows({{"ann@pg.test", "{PLAIN}x", "t", "", "{}"}});
    PostgresBackend c(config(), g.executor());
    auto e = c.authenticate("ann@pg.test", "pw", "smtp", "");
    BOOST_TEST(static_cast<int>(e.status) == static_cast<int>(Status::Ok));
    BOOST_TEST(e.record.senderAddresses == std::vector<std::string>{"ann@pg.test"}, boost::test_tools::per_element());
    BOOST_TEST(g.calls.size() == 1u);
}

// A 5th user_query column carries the alias destinations: alias_query is not run, and a
// NULL user means "no mailbox" (an alias-only address).
BOOST_AUTO_TEST_CASE(user_query_with_aliases_column_needs_no_second_statement) {
    Fake f;
    f.answers["postern_user"] = rows({{std::nullopt, std::nullopt, std::nullopt, std::nullopt, "{ann@pg.test,b@x}"}});
    f.answers["postern_alias"] = error("57P01");  // would fail the lookup if it were asked
    PostgresBackend b(config(), f.executor());
    auto a = b.lookup("sales@pg.test");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(Status::Ok));
    BOOST_TEST(!a.isMailbox);
    BOOST_TEST(a.aliasDestinations == (std::vector<std::string>{"ann@pg.test", "b@x"}), boost::test_tools::per_element());
    BOOST_TEST(f.calls.size() == 1u);

    Fake g;
    g.answers["postern_user"] = rows({{"bob@pg.test", "t", "pg.test/bob", "0", "{}"}});
    PostgresBackend c(config(), g.executor());
    auto m = c.lookup("bob@pg.test");
    BOOST_TEST(static_cast<int>(m.status) == static_cast<int>(Status::Ok));
    BOOST_TEST(m.isMailbox);
    BOOST_TEST(m.record.mailbox == "pg.test/bob");
    BOOST_TEST(m.aliasDestinations.empty());

    Fake h;
    h.answers["postern_user"] = rows({{std::nullopt, std::nullopt, std::nullopt, std::nullopt, "{}"}});
    PostgresBackend d(config(), h.executor());
    BOOST_TEST(static_cast<int>(d.lookup("nobody@pg.test").status) == static_cast<int>(Status::NotFound));

    Fake k;
    k.answers["postern_user"] = rows({{"dis@pg.test", "f", "", "0", "{}"}});
    PostgresBackend e(config(), k.executor());
    BOOST_TEST(static_cast<int>(e.lookup("dis@pg.test").status) == static_cast<int>(Status::Disabled));
}

BOOST_AUTO_TEST_CASE(names_that_cannot_be_keys_are_unknown_without_a_query) {
    Fake f;
    PostgresBackend b(config(), f.executor());
    for (std::string n : {std::string(), std::string("a\0b@x", 5), std::string("\xff@x"), std::string("a\n@x"),
                          std::string(400, 'a')}) {
        BOOST_TEST(static_cast<int>(b.authenticate(n, "pw", "smtp", "").status) ==
                   static_cast<int>(Status::UnknownUser));
        BOOST_TEST(static_cast<int>(b.lookup(n).status) == static_cast<int>(Status::NotFound));
    }
    BOOST_TEST(f.calls.empty());
    BOOST_TEST(PostgresBackend::normaliseKey("J\xc3\xb6rg@X.test") == "j\xc3\xb6rg@x.test");
}

BOOST_AUTO_TEST_CASE(lookup_mailbox_alias_disabled_notfound) {
    Fake f;
    f.answers["postern_user"] = rows({{"a@x", "t", "x/custom", "1000"}});
    f.answers["postern_alias"] = rows({{"b@x"}, {"c@remote, d@x"}});
    PostgresBackend b(config(), f.executor());
    auto a = b.lookup("A@x");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(Status::Ok));
    BOOST_TEST(a.isMailbox);
    BOOST_TEST(a.record.mailbox == "x/custom");
    BOOST_TEST(a.record.extra.at("quota") == "1000");
    std::vector<std::string> dests{"b@x", "c@remote", "d@x"};
    BOOST_TEST(a.aliasDestinations == dests, boost::test_tools::per_element());

    Fake disabled;
    disabled.answers["postern_user"] = rows({{"a@x", "f"}});
    PostgresBackend b2(config(), disabled.executor());
    BOOST_TEST(static_cast<int>(b2.lookup("a@x").status) == static_cast<int>(Status::Disabled));

    Fake none;
    PostgresBackend b3(config(), none.executor());
    BOOST_TEST(static_cast<int>(b3.lookup("a@x").status) == static_cast<int>(Status::NotFound));

    Fake two;
    two.answers["postern_user"] = rows({{"a@x", "t"}, {"a@x", "t"}});
    PostgresBackend b4(config(), two.executor());
    BOOST_TEST(static_cast<int>(b4.lookup("a@x").status) == static_cast<int>(Status::TempFail));

    Fake aliasDown;
    aliasDown.answers["postern_user"] = rows({{"a@x", "t"}});
    aliasDown.answers["postern_alias"] = error("08001");
    PostgresBackend b5(config(), aliasDown.executor());
    BOOST_TEST(static_cast<int>(b5.lookup("a@x").status) == static_cast<int>(Status::TempFail));
}

BOOST_AUTO_TEST_CASE(has_domain) {
    Fake f;
    f.answers["postern_domain"] = rows({{"1"}});
    PostgresBackend b(config(), f.executor());
    BOOST_TEST(static_cast<int>(b.hasDomain("X.test.")) == static_cast<int>(Status::Ok));
    BOOST_TEST(f.calls.back().second.at(0).value() == "x.test");
    Fake down;
    down.answers["postern_domain"] = error("08006");
    PostgresBackend b2(config(), down.executor());
    BOOST_TEST(static_cast<int>(b2.hasDomain("x.test")) == static_cast<int>(Status::TempFail));
}

struct ConfigRow {
    const char* name;
    std::map<std::string, std::string> keys;
    const char* error;  // substring; "" = valid
};

std::ostream& operator<<(std::ostream& o, const ConfigRow& r) {
    return o << r.name;
}

const ConfigRow ConfigRows[] = {
    {"minimal", {{"conninfo", "dbname=x"}}, ""},
    {"no conninfo", {}, "conninfo"},
    {"unknown key", {{"conninfo", "x"}, {"passwd_query", "SELECT $1"}}, "passwd_query"},
    {"query without $1", {{"conninfo", "x"}, {"password_query", "SELECT 'a','b',true"}}, "$1"},
    {"empty password query", {{"conninfo", "x"}, {"password_query", ""}}, "must not be empty"},
    {"empty alias query ok", {{"conninfo", "x"}, {"alias_query", ""}}, ""},
    {"pool 0", {{"conninfo", "x"}, {"pool_size", "0"}}, "pool_size"},
    {"bad timeout", {{"conninfo", "x"}, {"connect_timeout", "soon"}}, "connect_timeout"},
    {"zero connect timeout", {{"conninfo", "x"}, {"connect_timeout", "0"}}, "connect_timeout"},
    {"ms timeout", {{"conninfo", "x"}, {"statement_timeout", "1500ms"}}, ""},
    {"missing password file", {{"conninfo", "x"}, {"password_file", "/nonexistent/pw"}}, "password_file"},
    {"read replica", {{"conninfo", "x"}, {"read_conninfo", "host=r target_session_attrs=prefer-standby"}, {"replica_max_lag", "250ms"}}, ""},
    {"bad replica lag", {{"conninfo", "x"}, {"replica_max_lag", "soon"}}, "replica_max_lag"},
    {"replace without $3", {{"conninfo", "x"}, {"replace_password_query", "UPDATE users SET password = $2 WHERE address = $1"}}, "$3"},
    {"no replace query", {{"conninfo", "x"}, {"replace_password_query", ""}}, ""},
};

BOOST_AUTO_TEST_CASE(replace_password_is_a_compare_and_set) {
    Fake fake;
    PostgresBackend backend(config(), fake.executor());
    // No row: the stored hash is another one (or the user is gone); nothing is written.
    auto changed = backend.replacePassword("Ann@Example.test", "{MD5-CRYPT}old", "{ARGON2ID}new");
    BOOST_TEST((changed.status == api::WriteStatus::Changed));
    BOOST_REQUIRE_EQUAL(fake.calls.size(), 1u);
    BOOST_TEST((fake.calls[0].second == pg::Params{"ann@example.test", "{ARGON2ID}new", "{MD5-CRYPT}old"}));
    fake.answers["postern_write"] = rows({{"1"}});
    BOOST_TEST((backend.replacePassword("ann@example.test", "{MD5-CRYPT}old", "{ARGON2ID}new").status ==
                api::WriteStatus::Ok));
    // Without the query the host falls back (Unsupported), and nothing runs.
    PostgresBackend plain(PostgresConfig::fromMap({{"conninfo", "dbname=x"}, {"replace_password_query", ""}}),
                          fake.executor());
    BOOST_TEST((plain.replacePassword("ann@example.test", "{MD5-CRYPT}old", "{ARGON2ID}new").status ==
                api::WriteStatus::Unsupported));
    BOOST_TEST(fake.calls.size() == 2u);
    // The stock compare-and-set only with the stock password and set-password queries.
    BOOST_TEST(config().replacePasswordQuery == DefaultReplacePasswordQuery);
    BOOST_TEST(PostgresConfig::fromMap({{"conninfo", "dbname=x"},
                                        {"password_query", "SELECT username, '{SHA512-CRYPT}' || password FROM mailbox WHERE username = $1"}})
                   .replacePasswordQuery.empty());
    BOOST_TEST(PostgresConfig::fromMap({{"conninfo", "dbname=x"},
                                        {"set_password_query", "UPDATE mailbox SET password = $2 WHERE username = $1"}})
                   .replacePasswordQuery.empty());
}

BOOST_DATA_TEST_CASE(config_keys, boost::unit_test::data::make(ConfigRows), row) {
    std::string error;
    try {
        PostgresConfig::fromMap(row.keys);
    } catch (const std::invalid_argument& e) {
        error = e.what();
    }
    if (std::string(row.error).empty()) {
        BOOST_TEST(error.empty(), error);
    } else {
        BOOST_TEST(error.find(row.error) != std::string::npos, error);
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace postern::plugins::postgres
