// PgGrantStore::writeThrough (a grant held through an outage, written later) against a real
// PostgreSQL: the login's times are stored as given (the expiry is never extended), a row that
// expires later is never shortened; and WriteBehindGrantStore over a real PgGrantStore whose
// database is first unreachable (libpq's real connection failure) and then reachable.
// Part of the pg_grant_store suite, so tests/e2e/test_cluster_stores.py runs these too.
#include "grants/PgGrantStore.h"
#include "grants/WriteBehindGrantStore.h"

#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <string>

using namespace postern;
using grants::DurableGrantStore;
using grants::PgGrantSettings;
using grants::PgGrantStore;
using grants::WriteBehindGrantStore;
using namespace std::chrono_literals;
using TimePoint = std::chrono::system_clock::time_point;

namespace {

using namespace postern::testing;

core::ClientAddress ip(const std::string& text) {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress(text);
    return c;
}

// 10-minute grants on exact addresses, no cache.
PgGrantSettings noCache() {
    PgGrantSettings s;
    s.lifetime = 600s;
    s.ipv6PrefixLength = 128;
    s.cacheTtl = 0ms;
    return s;
}

// Holds up to 10000 grants; retries from 1 s doubling up to 30 s.
grants::WriteBehindSettings writeBehindSettings() {
    grants::WriteBehindSettings s;
    s.queueLimit = 10000;
    s.retryFirst = 1000ms;
    s.retryMax = 30000ms;
    return s;
}

long long micros(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The row's created and expires as microseconds since the epoch.
std::string times(Db& db, const std::string& key) {
    return db.one("SELECT (extract(epoch FROM created) * 1000000)::bigint || ' ' ||"
                  " (extract(epoch FROM expires) * 1000000)::bigint || ' ' || user_name"
                  " FROM pop_before_smtp_grants WHERE key = $1",
                  {key});
}

// Answers with `down` (a pool to a port nothing listens on) until switched to `up`: the same
// real PgGrantStore code on both sides, as when one database goes away and comes back.
class Switch final : public DurableGrantStore {
public:
    Switch(PgGrantStore& down, PgGrantStore& up) : down_(down), up_(up) {}
    std::atomic<bool> isUp{false};
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& c, const core::Grant& g) override { return cur().grant(c, g); }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& c, const std::string& sender, core::Grant* out) override {
        return cur().lookup(c, sender, out);
    }
    std::string keyText(const core::ClientAddress& c) const override { return up_.keyText(c); }
    std::chrono::seconds lifetime() const override { return up_.lifetime(); }
    WriteResult writeThrough(const std::string& k, const core::Grant& g, TimePoint created) override {
        return cur().writeThrough(k, g, created);
    }

private:
    PgGrantStore& cur() { return isUp ? up_ : down_; }
    PgGrantStore& down_;
    PgGrantStore& up_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_grant_store)

BOOST_AUTO_TEST_CASE(write_through_keeps_the_login_times_and_never_shortens, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore store(pool, noCache());

    // A login 200 s ago, held since: written with its own times (microseconds exact).
    const TimePoint created = TimePoint(std::chrono::duration_cast<TimePoint::duration>(
        std::chrono::microseconds(micros(std::chrono::system_clock::now() - 200s))));
    const core::Grant held{"bob@example.test", {"bob@example.test", "b@example.test"}, created + 600s,
                           {{"messages_per_hour", "5"}, {"recipients_per_day", "40"}}};
    BOOST_TEST((store.writeThrough("192.0.2.7", held, created) == DurableGrantStore::WriteResult::Written));
    BOOST_TEST(times(db, "192.0.2.7") ==
               std::to_string(micros(created)) + " " + std::to_string(micros(created + 600s)) + " bob@example.test");
    core::Grant g;
    BOOST_TEST((store.lookup(ip("192.0.2.7"), &g) == core::Answer::Yes));
    BOOST_TEST((g.expires == created + 600s));
    BOOST_TEST(g.senders.size() == 2u);
    BOOST_TEST((g.limits == held.limits));  // the user's own limits travel with the grant

    // Writing it again is harmless (the pool may retry a statement): same row.
    BOOST_TEST((store.writeThrough("192.0.2.7", held, created) == DurableGrantStore::WriteResult::Superseded));
    BOOST_TEST(times(db, "192.0.2.7") ==
               std::to_string(micros(created)) + " " + std::to_string(micros(created + 600s)) + " bob@example.test");

    // A newer login of the user stored since wins over its older held grant.
    BOOST_TEST(store.grant(ip("192.0.2.8"), "new@example.test"));
    const std::string newer = times(db, "192.0.2.8");
    const core::Grant older{"new@example.test", {"new@example.test"}, created + 600s, {}};
    BOOST_TEST((store.writeThrough("192.0.2.8", older, created) == DurableGrantStore::WriteResult::Superseded));
    BOOST_TEST(times(db, "192.0.2.8") == newer);
    BOOST_TEST((store.lookup(ip("192.0.2.8"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "new@example.test");

    // Another user's held grant for the address is written beside it (a shared NAT address).
    const core::Grant other{"old@example.test", {"old@example.test"}, created + 600s, {}};
    BOOST_TEST((store.writeThrough("192.0.2.8", other, created) == DurableGrantStore::WriteResult::Written));
    BOOST_TEST(db.one("SELECT string_agg(user_name, ',' ORDER BY user_name) FROM pop_before_smtp_grants"
                      " WHERE key = '192.0.2.8'") == "new@example.test,old@example.test");
    BOOST_TEST((store.lookup(ip("192.0.2.8"), "old@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "old@example.test");
}

BOOST_AUTO_TEST_CASE(write_behind_over_postgres_through_an_outage, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool downPool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    pg::Pool upPool(settings());
    PgGrantStore down(downPool, noCache());
    PgGrantStore up(upPool, noCache());
    Switch db2(down, up);
    WriteBehindGrantStore store(db2, writeBehindSettings());

    const auto before = std::chrono::system_clock::now();
    BOOST_TEST(store.grant(ip("192.0.2.9"), "bob@example.test"));  // held
    const auto after = std::chrono::system_clock::now();
    BOOST_TEST(store.queued() == 1u);
    BOOST_TEST((store.lookup(ip("192.0.2.9"), "bob@example.test", nullptr) == core::Answer::Yes));
    BOOST_TEST((store.lookup(ip("192.0.2.10"), "bob@example.test", nullptr) == core::Answer::TempFail));
    BOOST_TEST(store.flush().failed);
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants") == "0");

    db2.isUp = true;
    auto r = store.flush();
    BOOST_TEST(!r.failed);
    BOOST_TEST(r.written == 1u);
    BOOST_TEST(store.queued() == 0u);
    const long long expires = std::stoll(db.one(
        "SELECT (extract(epoch FROM expires) * 1000000)::bigint FROM pop_before_smtp_grants WHERE key = '192.0.2.9'"));
    BOOST_TEST(expires >= micros(before + 600s));
    BOOST_TEST(expires <= micros(after + 600s));
    // Another node (its own store on the same database) now honours it.
    pg::Pool otherPool(settings());
    PgGrantStore other(otherPool, noCache());
    core::Grant g;
    BOOST_TEST((other.lookup(ip("192.0.2.9"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
}

BOOST_AUTO_TEST_CASE(a_grant_revoked_after_its_login_is_not_written_back, *boost::unit_test::precondition(WithPg())) {
    // A grant held through an outage must not come back to life after an administrator
    // revoked it (rows as posternctl writes them: user "", "@domain" or the login; key "").
    Db db;
    db.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations");
    pg::Pool pool(settings());
    PgGrantStore store(pool, noCache());
    const TimePoint created = TimePoint(std::chrono::duration_cast<TimePoint::duration>(
        std::chrono::microseconds(micros(std::chrono::system_clock::now() - 100s))));
    auto held = [&](const std::string& user) {
        return core::Grant{user, {user}, created + 600s, {}};
    };
    using R = DurableGrantStore::WriteResult;
    db.sql("INSERT INTO pop_before_smtp_revocations (key, user_name) VALUES ('', 'bob@example.test'),"
           " ('', '@held.example'), ('192.0.2.50', '')");
    BOOST_TEST((store.writeThrough("192.0.2.7", held("bob@example.test"), created) == R::Revoked));  // the user
    BOOST_TEST((store.writeThrough("192.0.2.7", held("ann@held.example"), created) == R::Revoked));  // the domain
    BOOST_TEST((store.writeThrough("192.0.2.50", held("ann@example.test"), created) == R::Revoked));  // the address
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants") == "0");
    // Others are written; so is a login after the revocation.
    BOOST_TEST((store.writeThrough("192.0.2.7", held("ann@example.test"), created) == R::Written));
    BOOST_TEST((store.writeThrough("192.0.2.7", held("ann@unheld.example"), created) == R::Written));
    db.sql("UPDATE pop_before_smtp_revocations SET revoked = now() - interval '200 seconds'");
    BOOST_TEST((store.writeThrough("192.0.2.7", held("bob@example.test"), created) == R::Written));
    // Everything ("grant flush"), and revokeUser records the user's revocation too.
    db.sql("INSERT INTO pop_before_smtp_revocations (key, user_name) VALUES ('', '')");
    BOOST_TEST((store.writeThrough("192.0.2.8", held("carl@example.test"), created) == R::Revoked));
    db.sql("DELETE FROM pop_before_smtp_revocations");
    auto n = store.revokeUser("ann@example.test");
    BOOST_REQUIRE(n.has_value());
    BOOST_TEST(*n == 1u);
    BOOST_TEST((store.writeThrough("192.0.2.9", held("ann@example.test"), created) == R::Revoked));
    // The sweep forgets revocations older than twice the lifetime, at least a day (here a day).
    db.sql("UPDATE pop_before_smtp_revocations SET revoked = now() - interval '1 day 1 second'");
    db.sql("INSERT INTO pop_before_smtp_revocations (key, user_name, revoked)"
           " VALUES ('', 'eve@example.test', now() - interval '23 hours')");
    db.sql("INSERT INTO pop_before_smtp_revocations (key, user_name) VALUES ('', 'dan@example.test')");
    BOOST_TEST(store.sweep().has_value());
    BOOST_TEST(db.one("SELECT string_agg(user_name, ',' ORDER BY user_name) FROM pop_before_smtp_revocations") ==
               "dan@example.test,eve@example.test");
    db.sql("DELETE FROM pop_before_smtp_revocations WHERE user_name = 'eve@example.test'");

    // Through the write-behind layer: the held grant is dropped, not written.
    pg::Pool downPool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgGrantStore down(downPool, noCache());
    Switch db2(down, store);
    WriteBehindGrantStore outage(db2, writeBehindSettings());
    BOOST_TEST(outage.grant(ip("192.0.2.60"), "dan@example.test"));  // held (down), login before...
    db.sql("UPDATE pop_before_smtp_revocations SET revoked = now()");  // ...the revocation
    db2.isUp = true;
    auto r = outage.flush();
    BOOST_TEST(!r.failed);
    BOOST_TEST(r.revoked == 1u);
    BOOST_TEST(r.written == 0u);
    BOOST_TEST(outage.queued() == 0u);
    BOOST_TEST(db.one("SELECT count(*) FROM pop_before_smtp_grants WHERE key = '192.0.2.60'") == "0");
}

BOOST_AUTO_TEST_CASE(write_through_to_an_unreachable_database_fails) {
    // Runs everywhere: nothing listens on port 1.
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgGrantStore store(pool, noCache());
    const core::Grant g{"bob@example.test", {"bob@example.test"}, std::chrono::system_clock::now() + 600s, {}};
    BOOST_TEST((store.writeThrough("192.0.2.7", g, std::chrono::system_clock::now()) ==
                DurableGrantStore::WriteResult::Failed));
}

BOOST_AUTO_TEST_SUITE_END()
