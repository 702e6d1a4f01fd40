// Compromised-account detection: recording from many threads while the flush thread runs
// (nothing lost, nothing counted twice), distinct IPs and /24, /48 networks over the window,
// flagging once, release, the login log bounds, a failing store keeping its batch, the
// standalone release request file, and the bounds against username spraying (failures kept
// only for tracked accounts, max_tracked_accounts evicting the least recently active).
#include "abuse/AccountSecurity.h"
#include "abuse/AccountSecurityStore.h"
#include "abuse/LoginRecordingAuthService.h"

#include <boost/test/unit_test.hpp>

#include <Poco/File.h>
#include <Poco/FileStream.h>
#include <Poco/Path.h>
#include <Poco/TemporaryFile.h>

#include <atomic>
#include <functional>
#include <optional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace postern;
using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {

const core::TimePoint T0 = core::TimePoint(1700000000s);

struct ManualClock {
    std::mutex m;
    core::TimePoint now = T0;
    core::Clock fn() {
        return [this] {
            std::lock_guard l(m);
            return now;
        };
    }
    void advance(std::chrono::milliseconds d) {
        std::lock_guard l(m);
        now += d;
    }
};

AccountSecuritySettings quiet() {
    AccountSecuritySettings s;
    s.maxIps = 0;
    s.maxNetworks = 0;
    s.maxRemoteRejected = 0;
    s.maxBounces = 0;
    s.loginLogMaxEntries = 1000000;
    return s;
}

LoginEvent login(const std::string& user, const std::string& ip, const std::string& result = "ok") {
    return LoginEvent{T0, user, ip, "smtp", "PLAIN", "TLSv1.3", result, result == "ok"};
}

// Fails while `down` is set (a database outage).
class FlakyStore final : public AccountSecurityStore {
public:
    std::atomic<bool> down{false};
    MemoryAccountSecurityStore inner;
    std::function<void()> duringFlush;  // runs while a batch is being written
    bool flush(const ActivityBatch& b, core::TimePoint now, const AccountSecuritySettings& s,
               std::vector<AccountFlag>& f) override {
        if (duringFlush) duringFlush();
        return down ? false : inner.flush(b, now, s, f);
    }
    std::optional<std::vector<std::string>> flagged() override {
        if (down) return std::nullopt;
        return inner.flagged();
    }
    bool release(const std::string& u) override { return !down && inner.release(u); }
    bool prune(core::TimePoint now, const AccountSecuritySettings& s) override { return !down && inner.prune(now, s); }
    std::optional<bool> knownAddress(const std::string& u, const std::string& ip, unsigned prefix,
                                     postern::core::TimePoint ipsSince, postern::core::TimePoint logSince) override {
        if (down) return std::nullopt;
        return inner.knownAddress(u, ip, prefix, ipsSince, logSince);
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(account_security)

BOOST_AUTO_TEST_CASE(networks_are_ipv4_24_and_ipv6_48) {
    BOOST_TEST(networkOf("192.0.2.7").value() == "192.0.2.0/24");
    BOOST_TEST(networkOf("192.0.2.250").value() == "192.0.2.0/24");
    BOOST_TEST(networkOf("198.51.100.1").value() == "198.51.100.0/24");
    BOOST_TEST(networkOf("2001:db8:1:2::7").value() == "2001:db8:1::/48");
    BOOST_TEST(networkOf("2001:db8:1:ffff::1").value() == "2001:db8:1::/48");
    BOOST_TEST(networkOf("2001:db8:2::1").value() == "2001:db8:2::/48");
    BOOST_TEST(networkOf("::ffff:192.0.2.9").value() == "192.0.2.0/24");  // mapped counts as IPv4
    BOOST_TEST(!networkOf("not-an-ip").has_value());
}

BOOST_AUTO_TEST_CASE(distinct_ips_and_networks_in_the_window) {
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    ActivityBatch b;
    b.loginIps["ann"] = {"192.0.2.1", "192.0.2.2", "192.0.2.3", "198.51.100.4", "2001:db8:1:1::1",
                         "2001:db8:1:2::1", "2001:db8:9::1"};
    std::vector<AccountFlag> flagged;
    BOOST_REQUIRE(store.flush(b, T0, s, flagged));
    AccountTotals t = store.totals("ann", T0, 1h);
    BOOST_TEST(t.ips == 7u);
    BOOST_TEST(t.networks == 4u);  // 192.0.2/24, 198.51.100/24, 2001:db8:1::/48, 2001:db8:9::/48
    // The same IPs again later: still 7 distinct, now counted from the later login.
    BOOST_REQUIRE(store.flush(b, T0 + 50min, s, flagged));
    BOOST_TEST(store.totals("ann", T0 + 50min, 1h).ips == 7u);
    // One new IP after the window of the others passed... they are still seen at +50min.
    ActivityBatch one;
    one.loginIps["ann"] = {"203.0.113.5"};
    BOOST_REQUIRE(store.flush(one, T0 + 115min, s, flagged));
    t = store.totals("ann", T0 + 115min, 1h);
    BOOST_TEST(t.ips == 1u);  // the seven were last seen at +50min: out of the window
    BOOST_TEST(t.networks == 1u);
    BOOST_TEST(flagged.empty());
}

BOOST_AUTO_TEST_CASE(many_threads_recording_while_flushing_lose_nothing) {
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    ManualClock clock;  // entries are stamped T0: the age bound must not prune them
    AccountSecurity security(s, store, {}, clock.fn());
    constexpr int Threads = 8, PerThread = 2000, Users = 5;
    std::atomic<bool> done{false};
    std::thread flusher([&] {
        while (!done) security.flushNow();
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < Threads; ++t)
        workers.emplace_back([&, t] {
            for (int i = 0; i < PerThread; ++i) {
                const std::string user = "user" + std::to_string(i % Users);
                // Thread t uses IPs 10.t.(i%50).1: 50 distinct per thread and user set.
                security.recordLogin(login(user, "10." + std::to_string(t) + "." + std::to_string(i % 50) + ".1"));
                security.remoteRejected(user, 1);
                if (i % 4 == 0) security.bounced(user, 1);
            }
        });
    for (auto& w : workers) w.join();
    done = true;
    flusher.join();
    security.flushNow();  // whatever the last cycle did not take
    std::uint64_t logins = 0, rejected = 0, bounces = 0;
    for (int u = 0; u < Users; ++u) {
        const std::string user = "user" + std::to_string(u);
        AccountTotals t = store.totals(user, T0 + 1s, 1h);
        // user u gets i = u, u+5, ...: i%50 takes 10 values per thread -> 10 IPs x 8 threads.
        BOOST_TEST(t.ips == 80u);
        BOOST_TEST(t.networks == 80u);  // every 10.t.x.1 is its own /24
        rejected += t.remoteRejected;
        bounces += t.bounces;
        logins += store.logins(user, 0).size();
    }
    BOOST_TEST(logins == std::uint64_t(Threads) * PerThread);
    BOOST_TEST(rejected == std::uint64_t(Threads) * PerThread);
    BOOST_TEST(bounces == std::uint64_t(Threads) * (PerThread / 4));
    BOOST_TEST(security.droppedLogins() == 0u);
}

BOOST_AUTO_TEST_CASE(past_a_threshold_the_account_is_held_once_until_released) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.maxIps = 3;
    std::vector<AccountFlag> hooked;
    AccountSecurity security(s, store, [&](const AccountFlag& f) { hooked.push_back(f); }, clock.fn());
    for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) security.recordLogin(login("ann", ip));
    security.recordLogin(login("ann", "192.0.2.9", "fail"));  // failures do not count as IPs
    security.flushNow();
    BOOST_TEST(!security.isHeld("ann"));  // 3 is the maximum allowed, not past it
    security.recordLogin(login("ann", "192.0.2.4"));
    security.recordLogin(login("bob", "192.0.2.4"));
    security.flushNow();
    BOOST_TEST(security.isHeld("ann"));
    BOOST_TEST(!security.isHeld("bob"));
    BOOST_REQUIRE(hooked.size() == 1u);
    BOOST_TEST(hooked[0].user == "ann");
    BOOST_TEST(hooked[0].reason == "ips");
    BOOST_TEST(hooked[0].value == 4u);
    BOOST_TEST(hooked[0].threshold == 3u);
    // More logins: still one flag, no second event.
    security.recordLogin(login("ann", "192.0.2.5"));
    security.flushNow();
    BOOST_TEST(hooked.size() == 1u);
    BOOST_TEST(security.heldCount() == 1u);
    // Release clears the counters too: one more login does not flag again at once.
    BOOST_REQUIRE(store.release("ann"));
    security.recordLogin(login("ann", "192.0.2.6"));
    security.flushNow();
    BOOST_TEST(!security.isHeld("ann"));
    BOOST_TEST(hooked.size() == 1u);
}

BOOST_AUTO_TEST_CASE(networks_remote_rejections_and_bounces_flag_with_their_reason) {
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.maxNetworks = 2;
    s.maxRemoteRejected = 10;
    s.maxBounces = 2;
    std::vector<AccountFlag> hooked;
    AccountSecurity security(s, store, [&](const AccountFlag& f) { hooked.push_back(f); });
    // Many IPs in one /24 and one /48: two networks, not past 2.
    for (int i = 1; i <= 30; ++i) security.recordLogin(login("net", "192.0.2." + std::to_string(i)));
    security.recordLogin(login("net", "2001:db8:1::1"));
    security.recordLogin(login("net", "2001:db8:1:ff::1"));
    security.remoteRejected("rej", 10);
    security.bounced("bnc", 2);
    security.flushNow();
    BOOST_TEST(hooked.empty());
    security.recordLogin(login("net", "2001:db8:2::1"));  // a third network
    security.remoteRejected("rej", 1);
    security.bounced("bnc", 1);
    security.flushNow();
    BOOST_REQUIRE(hooked.size() == 3u);
    std::map<std::string, std::string> reasons;
    for (const auto& f : hooked) reasons[f.user] = f.reason;
    BOOST_TEST(reasons["net"] == "networks");
    BOOST_TEST(reasons["rej"] == "remote_rejected");
    BOOST_TEST(reasons["bnc"] == "bounces");
}

BOOST_AUTO_TEST_CASE(disabled_detection_holds_nobody_but_keeps_the_login_log) {
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.enabled = false;
    s.maxIps = 1;
    ManualClock clock;  // the entries are stamped T0: not pruned as 30 days old
    AccountSecurity security(s, store, {}, clock.fn());
    for (const char* ip : {"192.0.2.1", "192.0.2.2", "192.0.2.3"}) security.recordLogin(login("ann", ip));
    security.flushNow();
    BOOST_TEST(!security.isHeld("ann"));
    BOOST_TEST(store.logins("ann", 0).size() == 3u);
}

BOOST_AUTO_TEST_CASE(login_log_is_bounded_by_count_and_age) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.loginLogMaxEntries = 5;
    s.loginLogMaxAge = 1h;
    AccountSecurity security(s, store, {}, clock.fn());
    for (int i = 0; i < 14; ++i) {
        LoginEvent e = login("ann", "192.0.2." + std::to_string(i + 1), i % 2 ? "fail" : "ok");
        e.at = T0 + std::chrono::seconds(i);
        security.recordLogin(e);
    }
    security.flushNow();
    auto log = store.logins("ann", 0);
    BOOST_REQUIRE(log.size() == 10u);  // the newest 5 successes and the newest 5 failures
    BOOST_TEST(log.front().ip == "192.0.2.14");  // newest first
    BOOST_TEST(log.back().ip == "192.0.2.5");
    BOOST_TEST(log.front().tls == "TLSv1.3");
    BOOST_TEST(log.front().mechanism == "PLAIN");
    BOOST_TEST(store.logins("ann", 2).size() == 2u);
    clock.advance(2h);
    security.flushNow();  // prunes (at most once a minute)
    BOOST_TEST(store.logins("ann", 0).empty());
}

// A flood of failed attempts for an account (a bot guessing its password) does not push its
// successful logins out of the log: they are what its owner's known addresses come from.
BOOST_AUTO_TEST_CASE(failures_never_push_successes_out_of_the_login_log) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.loginLogMaxEntries = 5;
    AccountSecurity security(s, store, {}, clock.fn());
    security.recordLogin(login("ann", "192.0.2.1"));
    security.flushNow();
    for (int i = 0; i < 50; ++i) {
        LoginEvent e = login("ann", "198.51.100." + std::to_string(i + 1), i % 3 ? "fail" : "blocked");
        e.at = T0 + std::chrono::seconds(i + 1);
        security.recordLogin(e);
    }
    security.flushNow();
    auto log = store.logins("ann", 0);
    BOOST_REQUIRE(log.size() == 6u);
    BOOST_TEST(log.back().ip == "192.0.2.1");
    BOOST_TEST(log.front().ip == "198.51.100.50");
    BOOST_TEST(security.knownAddress("ann", "192.0.2.1", 64).value());
}

BOOST_AUTO_TEST_CASE(a_failing_store_keeps_the_batch_and_the_held_set) {
    FlakyStore store;
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;
    ManualClock clock;
    AccountSecurity security(s, store, {}, clock.fn());
    security.recordLogin(login("ann", "192.0.2.1"));
    security.recordLogin(login("ann", "192.0.2.2"));
    security.flushNow();
    BOOST_REQUIRE(security.isHeld("ann"));
    store.down = true;
    security.recordLogin(login("bob", "192.0.2.1"));
    security.recordLogin(login("bob", "192.0.2.2"));
    BOOST_TEST(!security.flushNow());
    BOOST_TEST(security.isHeld("ann"));  // an outage releases nobody
    BOOST_TEST(!security.isHeld("bob"));
    store.down = false;
    BOOST_TEST(security.flushNow());  // the kept batch is written now
    BOOST_TEST(security.isHeld("bob"));
    BOOST_TEST(store.inner.logins("bob", 0).size() == 2u);
}

// A node that starts while the shared database cannot answer does not know who is held: it
// must not send held accounts' queued mail nor take their submissions (review finding: the
// empty set released everyone until the first successful read).
BOOST_AUTO_TEST_CASE(until_the_flagged_set_is_read_everyone_counts_as_held) {
    FlakyStore store;
    store.down = true;
    ManualClock clock;
    AccountSecurity security(quiet(), store, {}, clock.fn());
    BOOST_TEST(!security.holdsKnown());
    BOOST_TEST(security.isHeld("ann"));
    BOOST_TEST(!security.flushNow());
    BOOST_TEST(!security.holdsKnown());
    BOOST_TEST(security.isHeld("ann"));
    store.down = false;
    BOOST_TEST(security.flushNow());
    BOOST_TEST(security.holdsKnown());
    BOOST_TEST(!security.isHeld("ann"));
    store.down = true;  // a later outage keeps the last known set
    BOOST_TEST(!security.flushNow());
    BOOST_TEST(security.holdsKnown());
    BOOST_TEST(!security.isHeld("ann"));
    // Detection off: nobody is held, known or not.
    AccountSecuritySettings off = quiet();
    off.enabled = false;
    AccountSecurity disabled(off, store, {}, clock.fn());
    BOOST_TEST(disabled.holdsKnown());
    BOOST_TEST(!disabled.isHeld("ann"));
}

// The addresses an account is known from (auth.penalty.known_address_failures): successful
// logins only, before and after the flush, IPv6 by prefix; the login log keeps them past
// the detection window.
BOOST_AUTO_TEST_CASE(known_addresses_are_those_with_a_successful_login) {
    FlakyStore store;
    AccountSecuritySettings s = quiet();
    s.window = std::chrono::hours(1);
    ManualClock clock;
    AccountSecurity security(s, store, {}, clock.fn());
    security.recordLogin(login("ann", "192.0.2.1"));
    security.recordLogin(login("ann", "192.0.2.66", "fail"));
    security.recordLogin(login("ann", "2001:db8:1:2::7"));
    // Recorded, not yet flushed.
    BOOST_TEST(security.knownAddress("ann", "192.0.2.1", 64).value());
    BOOST_TEST(!security.knownAddress("bob", "192.0.2.1", 64).value());
    BOOST_TEST(security.flushNow());
    BOOST_TEST(security.knownAddress("ann", "192.0.2.1", 64).value());
    BOOST_TEST(!security.knownAddress("ann", "192.0.2.66", 64).value());  // a failure is no login
    BOOST_TEST(!security.knownAddress("ann", "192.0.2.2", 64).value());   // IPv4: the address itself
    BOOST_TEST(security.knownAddress("ann", "2001:db8:1:2::99", 64).value());
    BOOST_TEST(!security.knownAddress("ann", "2001:db8:1:3::7", 64).value());
    BOOST_TEST(!security.knownAddress("ann", "2001:db8:1:2::99", 128).value());
    BOOST_TEST(!security.knownAddress("ann", "not an address", 64).value());
    // Past the detection window the login log still knows it (30 days by default), not
    // past its age.
    clock.now = T0 + std::chrono::hours(2);
    BOOST_TEST(security.knownAddress("ann", "192.0.2.1", 64).value());
    clock.now = T0 + std::chrono::hours(24 * 31);
    BOOST_TEST(!security.knownAddress("ann", "192.0.2.1", 64).value());  // not pruned yet, too old
    // Without a login log: the detection IPs only, within the window.
    MemoryAccountSecurityStore bare;
    std::vector<AccountFlag> flagged;
    ActivityBatch b;
    b.loginIps["ann"] = {"192.0.2.1"};
    BOOST_REQUIRE(bare.flush(b, T0, s, flagged));
    BOOST_TEST(bare.knownAddress("ann", "192.0.2.1", 64, T0 - std::chrono::hours(1), T0).value());
    BOOST_TEST(!bare.knownAddress("ann", "192.0.2.1", 64, T0, T0 - std::chrono::hours(1)).value());
    store.down = true;  // the store cannot tell
    BOOST_TEST(!security.knownAddress("ann", "192.0.2.1", 64).has_value());
}

// A directory may answer the uid "jdoe" with the account john.doe@example.test: the penalty
// counts and asks under the name given, so the addresses that name logged in from are known
// under it too (before the flush, while it is written, after it, up to login_log_max_age).
BOOST_AUTO_TEST_CASE(a_login_name_other_than_the_account_is_known_under_that_name) {
    FlakyStore store;
    AccountSecuritySettings s = quiet();
    ManualClock clock;
    AccountSecurity security(s, store, {}, clock.fn());
    LoginEvent e = login("john.doe@example.test", "192.0.2.5");
    e.login = "jdoe";
    security.recordLogin(e);
    LoginEvent failed = login("john.doe@example.test", "192.0.2.6", "fail");
    failed.login = "jdoe";
    security.recordLogin(failed);
    BOOST_TEST(security.knownAddress("jdoe", "192.0.2.5", 64).value());
    BOOST_TEST(security.flushNow());
    BOOST_TEST(security.knownAddress("jdoe", "192.0.2.5", 64).value());
    BOOST_TEST(security.knownAddress("john.doe@example.test", "192.0.2.5", 64).value());
    BOOST_TEST(!security.knownAddress("jdoe", "192.0.2.6", 64).value());  // a failure is no login
    BOOST_TEST(!security.knownAddress("jdoe", "192.0.2.7", 64).value());
    BOOST_TEST(!security.knownAddress("jd", "192.0.2.5", 64).value());
    BOOST_TEST(security.knownAddress("\xef\xbd\x8a" "doe", "192.0.2.5", 64).value());  // U+FF4A: one name, folded
    clock.now = T0 + std::chrono::hours(24 * 31);  // past login_log_max_age (30 days)
    BOOST_TEST(!security.knownAddress("jdoe", "192.0.2.5", 64).value());
    // The store forgets it at the prune.
    MemoryAccountSecurityStore bare;
    std::vector<AccountFlag> flagged;
    ActivityBatch b;
    b.loginNameIps["jdoe"] = {"192.0.2.5"};
    BOOST_REQUIRE(bare.flush(b, T0, s, flagged));
    BOOST_TEST(bare.knownAddress("jdoe", "192.0.2.5", 64, T0, T0 - std::chrono::hours(1)).value());
    BOOST_REQUIRE(bare.prune(T0 + s.loginLogMaxAge + std::chrono::seconds(1), s));
    BOOST_TEST(!bare.knownAddress("jdoe", "192.0.2.5", 64, T0 - std::chrono::hours(1), T0 - std::chrono::hours(1)).value());
    // At most MaxLoginNameIps addresses per name: the most recent.
    for (int i = 0; i < 40; ++i) {
        ActivityBatch one;
        one.loginNameIps["jdoe"] = {"198.51.100." + std::to_string(i)};
        BOOST_REQUIRE(bare.flush(one, T0 + std::chrono::seconds(i), s, flagged));
    }
    const auto since = T0 - std::chrono::hours(1);
    BOOST_TEST(!bare.knownAddress("jdoe", "198.51.100.7", 64, since, since).value());
    BOOST_TEST(bare.knownAddress("jdoe", "198.51.100.8", 64, since, since).value());
    BOOST_TEST(bare.knownAddress("jdoe", "198.51.100.39", 64, since, since).value());
    // Without a login log nothing is recorded for such names (as for the account's own log).
    AccountSecuritySettings nolog = s;
    nolog.loginLogMaxEntries = 0;
    FlakyStore other;
    AccountSecurity plain(nolog, other, {}, clock.fn());
    plain.recordLogin(e);
    BOOST_TEST(!plain.knownAddress("jdoe", "192.0.2.5", 64).value());
}

// Review finding: while a batch was being written it was neither pending nor stored, so a
// device that had just logged in was not known for that moment.
BOOST_AUTO_TEST_CASE(a_batch_being_written_still_knows_its_logins) {
    FlakyStore store;
    ManualClock clock;
    AccountSecurity security(quiet(), store, {}, clock.fn());
    security.recordLogin(login("ann", "192.0.2.1"));
    std::optional<bool> during;
    store.duringFlush = [&] { during = security.knownAddress("ann", "192.0.2.1", 64); };
    BOOST_TEST(security.flushNow());
    BOOST_TEST(during.value_or(false));
    store.duringFlush = {};
    store.down = true;  // a failed write: back among the pending
    security.recordLogin(login("bob", "192.0.2.2"));
    BOOST_TEST(!security.flushNow());
    BOOST_TEST(security.knownAddress("bob", "192.0.2.2", 64).value());
}

BOOST_AUTO_TEST_CASE(standalone_release_request_file_is_applied_and_removed) {
    Poco::Path dir(Poco::TemporaryFile::tempName());
    Poco::File(dir).createDirectories();
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;
    s.releaseDir = dir.toString();
    AccountSecurity security(s, store);
    security.recordLogin(login("ann@example.test", "192.0.2.1"));
    security.recordLogin(login("ann@example.test", "192.0.2.2"));
    security.flushNow();
    BOOST_REQUIRE(security.isHeld("ann@example.test"));
    const std::string request = dir.toString() + "/ann@example.test";
    {
        Poco::FileOutputStream f(request);
        f << "release\n";
    }
    security.flushNow();
    BOOST_TEST(!security.isHeld("ann@example.test"));
    BOOST_TEST(!Poco::File(request).exists());
    Poco::File(dir).remove(true);
}

BOOST_AUTO_TEST_CASE(logins_are_recorded_with_protocol_mechanism_tls_and_result) {
    struct Fixed final : core::AuthService {
        core::AuthStatus status = core::AuthStatus::Ok;
        core::AuthResult authenticate(const core::AuthRequest&) override {
            core::AuthResult r;
            r.status = status;
            if (status == core::AuthStatus::Ok) r.identity.user = "ann@example.test";
            return r;
        }
    } inner;
    MemoryAccountSecurityStore store;
    AccountSecurity security(quiet(), store);
    LoginRecordingAuthService auth(inner, security);
    core::AuthRequest req;
    req.user = "Ann@Example.Test";
    req.password = "secret";
    req.service = "pop3";
    req.sessionId = "s1";
    req.client.ip = Poco::Net::IPAddress("192.0.2.7");
    req.mechanism = "USER";
    req.tls = "TLSv1.2";
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::Ok));
    inner.status = core::AuthStatus::BadCredentials;
    req.tls = "";
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::BadCredentials));
    security.flushNow();
    // A success under the canonical login; a failure under the name given, lower-cased as
    // logins are compared, so "Ann@Example.Test" guessing is in ann@example.test's log.
    auto logs = store.logins("ann@example.test", 0);  // newest first
    BOOST_REQUIRE(logs.size() == 2u);
    const auto& ok = logs[1];
    BOOST_TEST(ok.ip == "192.0.2.7");
    BOOST_TEST(ok.protocol == "pop3");
    BOOST_TEST(ok.mechanism == "USER");
    BOOST_TEST(ok.tls == "TLSv1.2");
    BOOST_TEST(ok.result == "ok");
    BOOST_TEST(logs[0].result == "fail");
    BOOST_TEST(logs[0].tls == "");
    BOOST_TEST(store.logins("Ann@Example.Test", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 0u);
    // A name that is not UTF-8 is no account: not recorded at all (in a cluster PostgreSQL
    // refused the whole batch it was in, at every flush, and detection stopped).
    req.user = "ann\xff@example.test";
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::BadCredentials));
    req.user = std::string(400, 'a');
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::BadCredentials));
    security.flushNow();
    BOOST_TEST(store.logins("ann\xff@example.test", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 0u);
    BOOST_TEST(store.logins("ann@example.test", 0).size() == 2u);
    req.user = "ann@example.test";
    // Only the success counts its IP for detection.
    BOOST_TEST(store.totals("ann@example.test", std::chrono::system_clock::now(), 1h).ips == 1u);
    BOOST_TEST(store.totals("Ann@Example.Test", std::chrono::system_clock::now(), 1h).ips == 0u);
}

BOOST_AUTO_TEST_CASE(spraying_unknown_names_leaves_no_per_name_state) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecurity security(quiet(), store, {}, clock.fn());
    std::map<std::string, std::uint64_t> counted;
    security.setCountHook([&](std::string_view label, std::uint64_t n) { counted[std::string(label)] += n; });
    security.recordLogin(login("ann", "192.0.2.1"));  // a real account
    for (int i = 0; i < 5000; ++i)
        security.recordLogin(login("sprayed" + std::to_string(i), "198.51.100." + std::to_string(i % 250 + 1),
                                   i % 3 == 0 ? "blocked" : (i % 3 == 1 ? "fail" : "tempfail")));
    BOOST_TEST(security.flushNow());
    const AccountSecurityState st = store.snapshot();
    BOOST_TEST(st.accounts.size() == 1u);  // ann only
    BOOST_TEST(st.accounts.count("ann") == 1u);
    BOOST_TEST(store.logins("sprayed7", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 5000u);
    BOOST_TEST(counted["untracked_login"] == 5000u);
    security.flushNow();  // nothing new: nothing counted twice
    BOOST_TEST(counted["untracked_login"] == 5000u);
}

BOOST_AUTO_TEST_CASE(failures_are_logged_for_an_account_that_logged_in) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecurity security(quiet(), store, {}, clock.fn());
    // Before any success: a failure for bob is not kept.
    security.recordLogin(login("bob", "192.0.2.1", "fail"));
    security.flushNow();
    BOOST_TEST(store.logins("bob", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 1u);
    // A failure then a success in one batch: the success makes the name tracked, both kept.
    LoginEvent typo = login("bob", "192.0.2.1", "fail");
    LoginEvent ok = login("bob", "192.0.2.1");
    ok.at = T0 + 1s;
    security.recordLogin(typo);
    security.recordLogin(ok);
    security.flushNow();
    BOOST_TEST(store.logins("bob", 0).size() == 2u);
    // Later failures and blocks for bob (a brute force against a real account) are kept.
    LoginEvent bad = login("bob", "203.0.113.9", "fail");
    bad.at = T0 + 2s;
    LoginEvent blocked = login("bob", "203.0.113.9", "blocked");
    blocked.at = T0 + 3s;
    security.recordLogin(bad);
    security.recordLogin(blocked);
    security.flushNow();
    auto log = store.logins("bob", 0);
    BOOST_REQUIRE(log.size() == 4u);
    BOOST_TEST(log[0].result == "blocked");
    BOOST_TEST(log[1].result == "fail");
    BOOST_TEST(log[1].ip == "203.0.113.9");
    BOOST_TEST(store.counters().untrackedLogins == 1u);
    // Once the log has aged out, bob is untracked again until his next success.
    clock.advance(24h * 31);
    security.flushNow();
    BOOST_TEST(store.snapshot().accounts.count("bob") == 0u);
    security.recordLogin(login("bob", "203.0.113.9", "fail"));
    security.flushNow();
    BOOST_TEST(store.logins("bob", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 2u);
}

BOOST_AUTO_TEST_CASE(a_flagged_account_keeps_its_failures_logged) {
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;
    ManualClock clock;
    AccountSecurity security(s, store, {}, clock.fn());
    security.recordLogin(login("cat", "192.0.2.1"));
    security.recordLogin(login("cat", "192.0.2.2"));
    security.flushNow();
    BOOST_REQUIRE(security.isHeld("cat"));
    clock.advance(24h * 31);  // counters and log age out; the flag stays
    security.flushNow();
    BOOST_TEST(store.logins("cat", 0).empty());
    BOOST_TEST(security.isHeld("cat"));
    LoginEvent bad = login("cat", "203.0.113.1", "fail");
    bad.at = T0 + 24h * 31;
    security.recordLogin(bad);
    security.flushNow();
    BOOST_TEST(store.logins("cat", 0).size() == 1u);
}

BOOST_AUTO_TEST_CASE(past_max_tracked_accounts_the_least_recently_active_lose_their_log) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;  // "held" will be flagged: its flag must survive the eviction of its log
    s.maxTrackedAccounts = 3;
    std::map<std::string, std::uint64_t> counted;
    AccountSecurity security(s, store, {}, clock.fn());
    security.setCountHook([&](std::string_view label, std::uint64_t n) { counted[std::string(label)] += n; });
    LoginEvent h1 = login("held", "192.0.2.1");
    LoginEvent h2 = login("held", "192.0.2.2");
    security.recordLogin(h1);
    security.recordLogin(h2);
    security.flushNow();
    BOOST_REQUIRE(security.isHeld("held"));
    clock.advance(2h);  // held's IPs leave the window: only its log remains
    security.flushNow();
    // Four more accounts, each active later than the one before.
    for (int i = 0; i < 4; ++i) {
        LoginEvent e = login("u" + std::to_string(i), "192.0.2.9");
        e.at = T0 + 2h + std::chrono::seconds(i + 1);
        security.recordLogin(e);
        clock.advance(1s);
        security.flushNow();
    }
    const AccountSecurityState st = store.snapshot();
    std::size_t withLog = 0;
    for (const auto& [user, a] : st.accounts)
        if (!a.logins.empty()) ++withLog;
    BOOST_TEST(withLog == 3u);
    BOOST_TEST(store.logins("held", 0).empty());  // least recently active: evicted first
    BOOST_TEST(store.logins("u0", 0).empty());    // then the oldest of the others
    BOOST_TEST(store.logins("u1", 0).size() == 1u);
    BOOST_TEST(store.logins("u3", 0).size() == 1u);
    BOOST_TEST(security.isHeld("held"));  // the flag is never evicted
    BOOST_TEST(st.flags.count("held") == 1u);
    BOOST_TEST(store.counters().evictedLogs == 2u);
    BOOST_TEST(counted["login_log_evicted"] == 2u);
}

BOOST_AUTO_TEST_CASE(a_state_loaded_past_the_cap_is_cut_at_the_next_prune) {
    ManualClock clock;
    MemoryAccountSecurityStore store;
    AccountSecuritySettings big = quiet();
    std::vector<AccountFlag> f;
    ActivityBatch b;
    for (int i = 0; i < 50; ++i) {
        LoginEvent e = login("acct" + std::to_string(i), "192.0.2.1");
        e.at = T0 + std::chrono::seconds(i);
        b.logins.push_back(e);
    }
    BOOST_REQUIRE(store.flush(b, T0, big, f));
    BOOST_TEST(store.snapshot().accounts.size() == 50u);
    AccountSecuritySettings small = big;
    small.maxTrackedAccounts = 10;
    BOOST_REQUIRE(store.prune(T0 + 1min, small));
    const AccountSecurityState st = store.snapshot();
    BOOST_TEST(st.accounts.size() == 10u);
    BOOST_TEST(st.accounts.count("acct49") == 1u);  // the newest stay
    BOOST_TEST(st.accounts.count("acct40") == 1u);
    BOOST_TEST(st.accounts.count("acct39") == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
