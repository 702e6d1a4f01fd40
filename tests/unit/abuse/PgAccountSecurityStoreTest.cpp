// PgAccountSecurityStore against a real PostgreSQL (skipped without POSTERN_TEST_PG_CONNINFO;
// tests/e2e/test_cluster_stores.py runs it): two "nodes" adding up one account's IPs, the
// flag inserted once, /24 and /48 grouping in SQL, many nodes flushing at once, release, the
// login log trimmed to its count bound, failures for untracked (sprayed) names writing no
// rows, the prune capping the accounts with a login log (max_tracked_accounts), and the
// addresses an account is known from.
#include "abuse/PgAccountSecurityStore.h"
#include "pg/Arrays.h"

#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace postern;
using namespace postern::abuse;
using namespace postern::testing;
using namespace std::chrono_literals;

namespace {

const core::TimePoint T0 = core::TimePoint(1700000000s);

AccountSecuritySettings thresholds(std::uint32_t maxIps, std::uint32_t maxNetworks = 0) {
    AccountSecuritySettings s;
    s.maxIps = maxIps;
    s.maxNetworks = maxNetworks;
    s.maxRemoteRejected = 0;
    s.maxBounces = 0;
    s.nodeId = "test";
    return s;
}

ActivityBatch ips(const std::string& user, std::vector<std::string> list) {
    ActivityBatch b;
    b.loginIps[user].insert(list.begin(), list.end());
    return b;
}

void clean(Db& db) {
    db.sql("TRUNCATE account_security_ips, account_security_counts, account_flags, account_logins, account_login_names, account_login_activity");
}

// A clean database, one pool of two connections and a store on it, settings without a
// detection threshold: what most cases start from.
struct StoreCase {
    Db db;
    bool cleaned = (clean(db), true);
    pg::Pool pool{settings(2)};
    PgAccountSecurityStore store{pool};
    AccountSecuritySettings s = thresholds(0);
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_account_security_store)

BOOST_AUTO_TEST_CASE(text_arrays_escape_quotes_and_backslashes) {
    BOOST_TEST(pg::textArray({}) == "{}");
    BOOST_TEST(pg::textArray({"a", "b c"}) == "{\"a\",\"b c\"}");
    BOOST_TEST(pg::textArray({"x\"y", "p\\q", ""}) == "{\"x\\\"y\",\"p\\\\q\",\"\"}");
    // And the bigint[] forms (postern_rate_take's counts).
    BOOST_TEST(pg::bigintArray({}) == "{}");
    BOOST_TEST(pg::bigintArray({1, 20, 300}) == "{1,20,300}");
    BOOST_TEST((pg::parseBigintArray("{1,20,300}") == std::vector<std::uint64_t>{1, 20, 300}));
    BOOST_TEST((pg::parseBigintArray("{}") == std::vector<std::uint64_t>{}));
    for (const char* bad : {"", "{", "1,2", "{1,,2}", "{1,-2}", "{NULL}", "{99999999999999999999999}"})
        BOOST_TEST(!pg::parseBigintArray(bad).has_value(), bad);
}

BOOST_AUTO_TEST_CASE(two_nodes_add_up_and_flag_once, *boost::unit_test::precondition(WithPg())) {
    Db db;
    clean(db);
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgAccountSecurityStore a(poolA), b(poolB);
    const auto s = thresholds(3);
    std::vector<AccountFlag> flagged;
    BOOST_REQUIRE(a.flush(ips("ann", {"192.0.2.1", "192.0.2.2"}), T0, s, flagged));
    BOOST_REQUIRE(b.flush(ips("ann", {"192.0.2.2", "192.0.2.3"}), T0 + 1s, s, flagged));
    BOOST_TEST(flagged.empty());  // 3 distinct: not past 3
    BOOST_REQUIRE(b.flush(ips("ann", {"192.0.2.4"}), T0 + 2s, s, flagged));
    BOOST_REQUIRE(flagged.size() == 1u);
    BOOST_TEST(flagged[0].user == "ann");
    BOOST_TEST(flagged[0].reason == "ips");
    BOOST_TEST(flagged[0].value == 4u);
    BOOST_TEST(flagged[0].threshold == 3u);
    flagged.clear();
    BOOST_REQUIRE(a.flush(ips("ann", {"192.0.2.5"}), T0 + 3s, s, flagged));
    BOOST_TEST(flagged.empty());  // already flagged: no second event
    auto listA = a.flagged(), listB = b.flagged();
    BOOST_REQUIRE(listA && listB);
    BOOST_TEST(*listA == std::vector<std::string>{"ann"});
    BOOST_TEST(*listB == std::vector<std::string>{"ann"});
    // Release: flag and counters gone, one more IP does not flag again.
    BOOST_REQUIRE(b.release("ann"));
    BOOST_TEST(a.flagged()->empty());
    BOOST_REQUIRE(a.flush(ips("ann", {"192.0.2.6"}), T0 + 4s, s, flagged));
    BOOST_TEST(flagged.empty());
    // The window: IPs older than it count for nothing.
    BOOST_REQUIRE(a.flush(ips("ann", {"192.0.2.7", "192.0.2.8", "192.0.2.9"}), T0 + 4s + 1h + 1s, s, flagged));
    BOOST_TEST(flagged.empty());  // .6 is out of the window: 3 distinct
}

BOOST_AUTO_TEST_CASE(networks_are_ipv4_24_and_ipv6_48_in_sql, *boost::unit_test::precondition(WithPg())) {
    Db db;
    clean(db);
    pg::Pool pool(settings(2));
    PgAccountSecurityStore store(pool);
    const auto s = thresholds(0, 3);
    std::vector<AccountFlag> flagged;
    // 2 networks: 192.0.2.0/24 (three IPs) and 2001:db8:1::/48 (two IPs).
    BOOST_REQUIRE(store.flush(ips("bob", {"192.0.2.1", "192.0.2.200", "192.0.2.7", "2001:db8:1:1::1",
                                          "2001:db8:1:ff00::1"}),
                              T0, s, flagged));
    BOOST_REQUIRE(store.flush(ips("bob", {"198.51.100.1"}), T0 + 1s, s, flagged));  // 3
    BOOST_TEST(flagged.empty());
    BOOST_REQUIRE(store.flush(ips("bob", {"2001:db8:2::1"}), T0 + 2s, s, flagged));  // 4
    BOOST_REQUIRE(flagged.size() == 1u);
    BOOST_TEST(flagged[0].reason == "networks");
    BOOST_TEST(flagged[0].value == 4u);
}

BOOST_FIXTURE_TEST_CASE(remote_rejections_and_bounces_add_up, StoreCase, *boost::unit_test::precondition(WithPg())) {
    s.maxRemoteRejected = 5;
    s.maxBounces = 100;
    std::vector<AccountFlag> flagged;
    ActivityBatch b;
    b.counts["carl"] = {3, 1};
    BOOST_REQUIRE(store.flush(b, T0, s, flagged));
    BOOST_REQUIRE(store.flush(b, T0 + 1s, s, flagged));  // same minute: added into one row
    BOOST_TEST(db.one("SELECT rejected || '/' || bounces FROM account_security_counts WHERE account = 'carl'") == "6/2");
    BOOST_REQUIRE(flagged.size() == 1u);
    BOOST_TEST(flagged[0].reason == "remote_rejected");
    BOOST_TEST(flagged[0].value == 6u);
}

BOOST_AUTO_TEST_CASE(many_nodes_flushing_at_once_count_exactly, *boost::unit_test::precondition(WithPg())) {
    Db db;
    clean(db);
    constexpr int Nodes = 6, Rounds = 20;
    std::atomic<int> failures{0}, flags{0};
    std::vector<std::thread> threads;
    for (int n = 0; n < Nodes; ++n)
        threads.emplace_back([&, n] {
            pg::Pool pool(settings(1));
            PgAccountSecurityStore store(pool);
            const auto s = thresholds(50);
            for (int r = 0; r < Rounds; ++r) {
                ActivityBatch b;
                // Overlapping IPs between nodes (10.0.r.0..9): the upserts meet on the same rows.
                for (int i = 0; i < 10; ++i) b.loginIps["dora"].insert("10.0." + std::to_string(r) + "." + std::to_string(i));
                b.counts["dora"] = {1, 0};
                b.logins.push_back({T0 + std::chrono::milliseconds(n * 1000 + r), "dora", "10.9.9.9", "pop3", "USER",
                                    "", "ok", true});
                std::vector<AccountFlag> f;
                if (!store.flush(b, T0 + std::chrono::milliseconds(r), s, f)) ++failures;
                flags += static_cast<int>(f.size());
            }
        });
    for (auto& t : threads) t.join();
    BOOST_TEST(failures.load() == 0);
    BOOST_TEST(db.one("SELECT count(*) FROM account_security_ips WHERE account = 'dora'") == "200");
    BOOST_TEST(db.one("SELECT sum(rejected) FROM account_security_counts WHERE account = 'dora'") ==
               std::to_string(Nodes * Rounds));
    BOOST_TEST(flags.load() == 1);  // 200 IPs > 50: exactly one node's statement flagged dora
    // Concurrent trims may each miss the others' rows; the next flush for dora trims to the bound.
    pg::Pool pool(settings(1));
    PgAccountSecurityStore store(pool);
    ActivityBatch last;
    last.logins.push_back({T0 + 1h, "dora", "10.9.9.9", "pop3", "USER", "", "ok", true});
    std::vector<AccountFlag> f;
    BOOST_REQUIRE(store.flush(last, T0 + 1h, thresholds(50), f));
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins WHERE account = 'dora'") == "100");  // the default bound
}

BOOST_FIXTURE_TEST_CASE(login_log_is_trimmed_per_account_and_by_age, StoreCase, *boost::unit_test::precondition(WithPg())) {
    s.loginLogMaxEntries = 3;
    s.loginLogMaxAge = 1h;
    ActivityBatch b;
    for (int i = 0; i < 5; ++i)
        b.logins.push_back({T0 + std::chrono::seconds(i), "eve", "192.0.2." + std::to_string(i + 1), "smtp", "PLAIN",
                            "TLSv1.3", i == 4 ? "fail" : "ok", i != 4});
    b.logins.push_back({T0, "fay", "2001:db8::1", "pop3", "USER", "", "ok", true});
    std::vector<AccountFlag> flagged;
    BOOST_REQUIRE(store.flush(b, T0 + 5s, s, flagged));
    // The newest 3 successes and the failure (failures never push successes out).
    BOOST_TEST(db.one("SELECT string_agg(host(ip), ',' ORDER BY at DESC) FROM account_logins WHERE account = 'eve'") ==
               "192.0.2.5,192.0.2.4,192.0.2.3,192.0.2.2");
    BOOST_TEST(db.one("SELECT result || ' ' || tls || ' ' || mechanism || ' ' || protocol FROM account_logins"
                      " WHERE account = 'eve' AND ip = '192.0.2.5'") == "fail TLSv1.3 PLAIN smtp");
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins WHERE account = 'fay'") == "1");
    BOOST_REQUIRE(store.prune(T0 + 1h + 2500ms, s));  // an hour old: eve's .2 and .3 (T0+1s, T0+2s) and fay's go
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins WHERE account = 'eve'") == "2");
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins WHERE account = 'fay'") == "0");
}

// The addresses an account is known from (the failed-login penalty's exemption), as the
// memory store answers: detection IPs and "ok" login log entries, IPv6 by prefix.
BOOST_FIXTURE_TEST_CASE(known_addresses_in_sql, StoreCase, *boost::unit_test::precondition(WithPg())) {
    ActivityBatch b = ips("gil", {"198.51.100.7"});
    b.logins.push_back({T0, "gil", "192.0.2.1", "pop3", "USER", "", "ok", true});
    b.logins.push_back({T0, "gil", "192.0.2.66", "pop3", "USER", "", "fail", false});
    b.logins.push_back({T0, "gil", "2001:db8:1:2::7", "smtp", "PLAIN", "TLSv1.3", "ok", true});
    std::vector<AccountFlag> flagged;
    BOOST_REQUIRE(store.flush(b, T0, s, flagged));
    auto known = [&](const std::string& user, const std::string& ip, unsigned prefix,
                     core::TimePoint ipsSince = T0 - 1h, core::TimePoint logSince = T0 - 1h) {
        return store.knownAddress(user, ip, prefix, ipsSince, logSince).value();
    };
    BOOST_TEST(known("gil", "198.51.100.7", 64));  // a detection IP
    BOOST_TEST(known("gil", "192.0.2.1", 64));     // the login log
    BOOST_TEST(!known("gil", "192.0.2.66", 64));   // a failure
    BOOST_TEST(!known("gil", "192.0.2.2", 64));
    BOOST_TEST(known("gil", "2001:db8:1:2::99", 64));
    BOOST_TEST(!known("gil", "2001:db8:1:3::7", 64));
    BOOST_TEST(!known("gil", "2001:db8:1:2::99", 128));
    BOOST_TEST(!known("hal", "192.0.2.1", 64));
    BOOST_TEST(!known("gil", "not an address", 64));
    // Each source within its own age bound only.
    BOOST_TEST(!known("gil", "198.51.100.7", 64, T0, T0 - 1h));
    BOOST_TEST(known("gil", "192.0.2.1", 64, T0, T0 - 1h));
    BOOST_TEST(!known("gil", "192.0.2.1", 64, T0 - 1h, T0));
    BOOST_TEST(known("gil", "198.51.100.7", 64, T0 - 1h, T0));
    // A login name other than its account's (a uid the directory answers with an address):
    // known under that name (schema 011), within the login log's age, until pruned.
    ActivityBatch n;
    n.loginNameIps["gil.uid"] = {"203.0.113.9", "2001:db8:5::1"};
    BOOST_REQUIRE(store.flush(n, T0, s, flagged));
    BOOST_TEST(known("gil.uid", "203.0.113.9", 64));
    BOOST_TEST(known("gil.uid", "2001:db8:5::2", 64));
    BOOST_TEST(!known("gil.uid", "203.0.113.10", 64));
    BOOST_TEST(!known("gil", "203.0.113.9", 64));
    BOOST_TEST(!known("gil.uid", "203.0.113.9", 64, T0 - 1h, T0));
    BOOST_TEST(known("GIL.UID", "203.0.113.9", 64));  // folded as the penalty folds it
    // At most MaxLoginNameIps addresses per name, the most recent (trimmed at the evaluation).
    for (int i = 0; i < 40; ++i) {
        ActivityBatch one;
        one.loginNameIps["gil.uid"] = {"198.51.100." + std::to_string(i)};
        BOOST_REQUIRE(store.flush(one, T0 + std::chrono::seconds(i + 1), s, flagged));
    }
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_names WHERE login = 'gil.uid'") == "32");
    BOOST_TEST(!known("gil.uid", "198.51.100.7", 64));
    BOOST_TEST(known("gil.uid", "198.51.100.39", 64));
    BOOST_REQUIRE(store.prune(T0 + s.loginLogMaxAge + 1h, s));
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_names") == "0");
}

BOOST_AUTO_TEST_CASE(sprayed_names_write_no_rows_and_tracked_accounts_keep_their_failures,
                     *boost::unit_test::precondition(WithPg())) {
    Db db;
    clean(db);
    pg::Pool pool(settings(2));
    PgAccountSecurityStore store(pool);
    AccountSecuritySettings s = thresholds(0);
    ActivityBatch first;  // gus logs in; hal only fails (an unknown name)
    first.logins.push_back({T0, "gus", "192.0.2.1", "smtp", "PLAIN", "", "ok", true});
    first.logins.push_back({T0, "hal", "192.0.2.1", "smtp", "PLAIN", "", "fail", false});
    std::vector<AccountFlag> f;
    BOOST_REQUIRE(store.flush(first, T0, s, f));
    ActivityBatch spray;
    for (int i = 0; i < 2000; ++i)
        spray.logins.push_back({T0 + 1s, "spray" + std::to_string(i), "198.51.100." + std::to_string(i % 250 + 1), "pop3",
                                "USER", "", i % 2 ? "fail" : "blocked", false});
    spray.logins.push_back({T0 + 2s, "gus", "203.0.113.5", "smtp", "LOGIN", "", "fail", false});  // tracked
    BOOST_REQUIRE(store.flush(spray, T0 + 2s, s, f));
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "1");
    BOOST_TEST(db.one("SELECT string_agg(result, ',' ORDER BY at DESC) FROM account_logins WHERE account = 'gus'") ==
               "fail,ok");
    BOOST_TEST(store.counters().untrackedLogins == 2001u);  // hal + the spray
}

BOOST_FIXTURE_TEST_CASE(prune_caps_the_accounts_with_a_login_log, StoreCase, *boost::unit_test::precondition(WithPg())) {
    ActivityBatch b;
    for (int i = 0; i < 30; ++i)
        for (int k = 0; k < 3; ++k)
            b.logins.push_back({T0 + std::chrono::seconds(i * 10 + k), "acct" + std::to_string(i), "192.0.2.1", "smtp",
                                "PLAIN", "", "ok", true});
    std::vector<AccountFlag> f;
    BOOST_REQUIRE(store.flush(b, T0 + 1h, s, f));
    // One activity row per account, its newest entry (schema 012: what the cap reads).
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity") == "30");
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity AS a WHERE a.last_at ="
                      " (SELECT max(at) FROM account_logins AS l WHERE l.account = a.account)") == "30");
    db.sql("INSERT INTO account_flags (account, reason, value, threshold) VALUES ('acct0', 'ips', 9, 1)");
    s.maxTrackedAccounts = 10;
    BOOST_REQUIRE(store.prune(T0 + 50min, s));  // the first prune (at start-up) does not cap
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "30");
    BOOST_REQUIRE(store.prune(T0 + 1h, s));
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "10");
    BOOST_TEST(db.one("SELECT min(account) FROM account_logins") == "acct20");  // the 10 most recently active
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins") == "30");          // whole logs kept
    BOOST_TEST(db.one("SELECT count(*) FROM account_flags WHERE account = 'acct0'") == "1");  // flags never go
    BOOST_TEST(db.one("SELECT string_agg(account, ',' ORDER BY account) FROM account_login_activity") ==
               db.one("SELECT string_agg(DISTINCT account, ',' ORDER BY account) FROM account_logins"));
    BOOST_TEST(store.counters().evictedLogs == 20u);
    BOOST_REQUIRE(store.prune(T0 + 1h + 10min, s));  // nothing more past the cap
    BOOST_TEST(store.counters().evictedLogs == 20u);
    // The cap (a whole-table aggregate) runs at most every ten minutes; the age deletions
    // run at every prune.
    ActivityBatch more;
    for (int i = 30; i < 35; ++i)
        more.logins.push_back({T0 + 1h + std::chrono::seconds(i), "acct" + std::to_string(i), "192.0.2.1", "smtp",
                               "PLAIN", "", "ok", true});
    BOOST_REQUIRE(store.flush(more, T0 + 1h + 11min, s, f));
    BOOST_REQUIRE(store.prune(T0 + 1h + 12min, s));
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "15");
    BOOST_REQUIRE(store.prune(T0 + 1h + 21min, s));
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "10");
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity") == "10");
    BOOST_TEST(store.counters().evictedLogs == 25u);
    // An account that logs in again after its log was evicted is tracked again.
    ActivityBatch again;
    again.logins.push_back({T0 + 1h + 25min, "acct1", "192.0.2.1", "smtp", "PLAIN", "", "ok", true});
    BOOST_REQUIRE(store.flush(again, T0 + 1h + 25min, s, f));
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity WHERE account = 'acct1'") == "1");
    // Past login_log_max_age the activity rows go with the login log.
    BOOST_REQUIRE(store.prune(T0 + 1h + 25min + s.loginLogMaxAge + 1min, s));
    BOOST_TEST(db.one("SELECT count(*) FROM account_logins") == "0");
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity") == "0");
}

// Past the cap by more than one batch (2,000 accounts): the run goes on batch after batch.
BOOST_FIXTURE_TEST_CASE(the_cap_evicts_in_batches, StoreCase, *boost::unit_test::precondition(WithPg())) {
    ActivityBatch b;
    for (int i = 0; i < 4100; ++i)
        b.logins.push_back({T0 + std::chrono::milliseconds(i), "many" + std::to_string(i), "192.0.2.1", "smtp", "PLAIN",
                            "", "ok", true});
    std::vector<AccountFlag> f;
    BOOST_REQUIRE(store.flush(b, T0 + 1h, s, f));
    s.maxTrackedAccounts = 10;
    BOOST_REQUIRE(store.prune(T0 + 1h, s));  // the first prune does not cap
    BOOST_REQUIRE(store.prune(T0 + 1h + 10min, s));
    BOOST_TEST(db.one("SELECT count(DISTINCT account) FROM account_logins") == "10");
    BOOST_TEST(db.one("SELECT count(*) FROM account_login_activity") == "10");
    BOOST_TEST(db.one("SELECT min(account) FROM account_logins") == "many4090");  // the 10 most recently active
    BOOST_TEST(store.counters().evictedLogs == 4090u);
}

BOOST_AUTO_TEST_SUITE_END()
