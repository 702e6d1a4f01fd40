// The penalty in front of the auth service: failures are delayed and counted, a success
// is never delayed, a block is answered without asking the backend, an outage is no guess.
#include "abuse/PenalizedAuthService.h"

#include "abuse/MemoryPenaltyStore.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

using namespace postern;
using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {
struct FakeAuth : core::AuthService {
    int calls = 0;
    bool down = false;
    core::AuthResult authenticate(const core::AuthRequest& r) override {
        ++calls;
        core::AuthResult res;
        if (down) return res;
        res.status = r.password == "right" ? core::AuthStatus::Ok : core::AuthStatus::BadCredentials;
        return res;
    }
};

core::AuthRequest req(const std::string& ip, const std::string& pw) {
    core::AuthRequest r;
    r.user = "alice@example.test";
    r.password = pw;
    r.service = "smtp";
    r.client.ip = Poco::Net::IPAddress(ip);
    r.sessionId = "t";
    return r;
}

struct Fixture {
    FakeAuth inner;
    std::vector<std::chrono::milliseconds> sleeps;
    AuthPenaltySettings settings;
    std::unique_ptr<AuthPenalty> penalty;
    std::unique_ptr<PenalizedAuthService> svc;
    Fixture() {
        settings.window = 10min;
        settings.maxFailuresIp = 3;
        settings.maxFailuresAccount = 100;
        settings.baseDelay = 1s;
        settings.maxDelay = 8s;
        settings.ipv6Prefix = 64;
        settings.parallelWait = 10s;
        penalty = std::make_unique<AuthPenalty>(settings);
        svc = std::make_unique<PenalizedAuthService>(inner, *penalty,
                                                     [this](std::chrono::milliseconds d) { sleeps.push_back(d); });
    }
};
}  // namespace

core::ClientAddress addr_of(const std::string& ip) {
    core::ClientAddress a;
    a.ip = Poco::Net::IPAddress(ip);
    return a;
}

BOOST_AUTO_TEST_SUITE(penalized_auth_service)

BOOST_AUTO_TEST_CASE(failures_delayed_success_not_then_block) {
    Fixture f;
    BOOST_TEST((f.svc->authenticate(req("192.0.2.1", "bad")).status == core::AuthStatus::BadCredentials));
    BOOST_TEST(f.sleeps.empty());  // first failure: nothing earlier to count
    f.svc->authenticate(req("192.0.2.1", "bad"));
    BOOST_REQUIRE_EQUAL(f.sleeps.size(), 1u);
    BOOST_TEST(f.sleeps.back().count() == 1000);
    // A correct password from a penalised IP is answered at once (the IP is not blocked yet).
    BOOST_TEST((f.svc->authenticate(req("192.0.2.1", "right")).status == core::AuthStatus::Ok));
    BOOST_TEST(f.sleeps.size() == 1u);
    f.svc->authenticate(req("192.0.2.1", "bad"));
    BOOST_TEST(f.sleeps.back().count() == 2000);
    // Third failure from the IP reached: blocked, even with the right password, and the
    // backend is not asked (no oracle).
    int before = f.inner.calls;
    BOOST_TEST((f.svc->authenticate(req("192.0.2.1", "right")).status == core::AuthStatus::Blocked));
    BOOST_TEST(f.inner.calls == before);
    // Another IP is unaffected.
    BOOST_TEST((f.svc->authenticate(req("192.0.2.2", "right")).status == core::AuthStatus::Ok));
}

// penaltyCheckedByCaller (POP3 in a cluster: the login statement checks a success): the
// backend is asked first; a failure is checked before the answer - blocked gives the blocked
// answer (not BadCredentials, not counted), otherwise it is counted and delayed as usual.
BOOST_AUTO_TEST_CASE(caller_checked_success_is_not_checked_here_failures_are) {
    Fixture f;
    auto checked = [](const std::string& ip, const std::string& pw) {
        core::AuthRequest r = req(ip, pw);
        r.penaltyCheckedByCaller = true;
        return r;
    };
    for (int i = 0; i < 3; ++i)
        BOOST_TEST((f.svc->authenticate(checked("192.0.2.1", "bad")).status == core::AuthStatus::BadCredentials));
    BOOST_TEST(f.penalty->check(addr_of("192.0.2.1"), "").isBlocked());
    // Blocked now: a wrong password gets the blocked answer after the longest delay and is
    // not counted; a right one is Ok here (the caller's statement refuses it).
    const std::size_t sleeps = f.sleeps.size();
    BOOST_TEST((f.svc->authenticate(checked("192.0.2.1", "bad")).status == core::AuthStatus::Blocked));
    BOOST_REQUIRE_EQUAL(f.sleeps.size(), sleeps + 1);
    BOOST_TEST(f.sleeps.back().count() == 8000);
    BOOST_TEST(f.penalty->store().get("ip:192.0.2.1", std::chrono::system_clock::now())->failures == 3u);
    BOOST_TEST((f.svc->authenticate(checked("192.0.2.1", "right")).status == core::AuthStatus::Ok));
}

namespace {
// A backend that takes a while to say no (a slow hash, an LDAP bind), counting how many
// verifications overlap.
struct SlowAuth : core::AuthService {
    std::atomic<int> calls{0}, running{0}, maxRunning{0};
    std::chrono::milliseconds took{100};
    core::AuthResult authenticate(const core::AuthRequest& r) override {
        ++calls;
        int now = ++running;
        for (int m = maxRunning.load(); now > m && !maxRunning.compare_exchange_weak(m, now);) {}
        std::this_thread::sleep_for(took);
        --running;
        core::AuthResult res;
        res.status = r.password == "right" ? core::AuthStatus::Ok : core::AuthStatus::BadCredentials;
        return res;
    }
};

// `n` logins at once; counts the answers.
std::map<core::AuthStatus, int> parallel(PenalizedAuthService& svc, int n, const std::function<core::AuthRequest(int)>& make) {
    std::mutex m;
    std::map<core::AuthStatus, int> answers;
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] {
            auto status = svc.authenticate(make(i)).status;
            std::lock_guard lock(m);
            ++answers[status];
        });
    for (auto& t : threads) t.join();
    return answers;
}
}  // namespace

// Review finding: the penalty was checked, then the password verified, then the failure
// counted, so 20 guesses at once were all verified against a limit of 3.
BOOST_AUTO_TEST_CASE(parallel_guesses_for_one_account_stay_within_the_limit) {
    SlowAuth inner;
    AuthPenaltySettings s = Fixture().settings;
    s.maxFailuresIp = 0;
    s.maxFailuresAccount = 3;
    AuthPenalty penalty(s);
    PenalizedAuthService svc(inner, penalty, [](std::chrono::milliseconds) {});
    for (bool checkedByCaller : {false, true}) {
        inner.calls = 0;
        const std::string user = checkedByCaller ? "carol@example.test" : "bob@example.test";
        auto answers = parallel(svc, 20, [&](int i) {
            auto r = req("192.0.2." + std::to_string(10 + i), "bad");
            r.user = user;
            r.penaltyCheckedByCaller = checkedByCaller;
            return r;
        });
        // A caller that checks the penalty itself has a login verified first when no other
        // is in progress (its answer is then checked): what is bounded is the answers.
        if (!checkedByCaller)
            BOOST_TEST(inner.calls.load() == 3);
        BOOST_TEST(answers[core::AuthStatus::BadCredentials] == 3);
        BOOST_TEST(answers[core::AuthStatus::Blocked] == 17);
        BOOST_TEST(penalty.store().get(AuthPenalty::accountKey(user), std::chrono::system_clock::now())->failures == 3u);
    }
}

namespace {
// Counts the reads of the counters (each one a statement on a cluster's store).
struct CountingStore : PenaltyStore {
    MemoryPenaltyStore inner;
    std::atomic<int> reads{0};
    std::optional<PenaltyCount> increment(const std::string& k, core::TimePoint now, std::chrono::milliseconds w,
                                          std::uint32_t hold) override {
        return inner.increment(k, now, w, hold);
    }
    std::optional<PenaltyCount> get(const std::string& k, core::TimePoint now) override {
        ++reads;
        return inner.get(k, now);
    }
    bool reset(const std::string& k) override { return inner.reset(k); }
};
}  // namespace

// Review finding: a waiter giving its place back woke the other waiters, which re-read the
// store, gave theirs back and woke the first again: a spin against the store (a statement
// each round on a cluster) for as long as the admitted logins were being verified.
BOOST_AUTO_TEST_CASE(waiting_logins_do_not_spin_against_the_store) {
    SlowAuth inner;
    inner.took = std::chrono::milliseconds(300);
    AuthPenaltySettings s = Fixture().settings;
    s.maxFailuresIp = 0;
    s.maxFailuresAccount = 3;
    auto store = std::make_unique<CountingStore>();
    CountingStore& counting = *store;
    AuthPenalty penalty(s, std::move(store));
    PenalizedAuthService svc(inner, penalty, [](std::chrono::milliseconds) {});
    auto answers = parallel(svc, 12, [](int i) {
        auto r = req("192.0.2." + std::to_string(100 + i), "bad");
        r.user = "dave@example.test";
        return r;
    });
    BOOST_TEST(answers[core::AuthStatus::BadCredentials] == 3);
    BOOST_TEST(answers[core::AuthStatus::Blocked] == 9);
    // Each login reads the counters (two keys: two reads) once, and again after each
    // verification that ends while it waits (at most 3): far fewer than a spin's thousands.
    BOOST_TEST_MESSAGE("reads: " << counting.reads.load());
    BOOST_TEST(counting.reads.load() <= 12 * 2 * 5);
}

BOOST_AUTO_TEST_CASE(parallel_guesses_from_one_address_stay_within_the_limit) {
    SlowAuth inner;
    Fixture f;  // 3 failures per address
    PenalizedAuthService svc(inner, *f.penalty, [](std::chrono::milliseconds) {});
    auto answers = parallel(svc, 12, [](int i) {
        auto r = req("192.0.2.9", "bad");
        r.user = "u" + std::to_string(i) + "@example.test";
        return r;
    });
    BOOST_TEST(inner.calls.load() == 3);
    BOOST_TEST(answers[core::AuthStatus::BadCredentials] == 3);
    BOOST_TEST(answers[core::AuthStatus::Blocked] == 9);
}

// Far from the limit, parallel logins are verified side by side (no queue per account).
BOOST_AUTO_TEST_CASE(parallel_logins_below_the_limit_are_not_serialised) {
    SlowAuth inner;
    AuthPenaltySettings s = Fixture().settings;
    s.maxFailuresIp = 100;
    s.maxFailuresAccount = 20;
    AuthPenalty penalty(s);
    PenalizedAuthService svc(inner, penalty, [](std::chrono::milliseconds) {});
    auto answers = parallel(svc, 8, [](int) { return req("192.0.2.7", "right"); });
    BOOST_TEST(answers[core::AuthStatus::Ok] == 8);
    BOOST_TEST(inner.maxRunning.load() > 1);
}

// A login that waits too long for the others gets a temporary failure, not a verdict.
BOOST_AUTO_TEST_CASE(waiting_for_parallel_logins_is_bounded) {
    SlowAuth inner;
    inner.took = std::chrono::milliseconds(600);
    AuthPenaltySettings s = Fixture().settings;
    s.maxFailuresIp = 1;
    s.parallelWait = std::chrono::milliseconds(100);
    AuthPenalty penalty(s);
    PenalizedAuthService svc(inner, penalty, [](std::chrono::milliseconds) {});
    auto answers = parallel(svc, 2, [](int) { return req("192.0.2.8", "right"); });
    BOOST_TEST(answers[core::AuthStatus::Ok] == 1);
    BOOST_TEST(answers[core::AuthStatus::TempFail] == 1);
    BOOST_TEST(inner.calls.load() == 1);
}

BOOST_AUTO_TEST_CASE(backend_outage_is_not_a_guess) {
    Fixture f;
    f.inner.down = true;
    for (int i = 0; i < 5; ++i)
        BOOST_TEST((f.svc->authenticate(req("192.0.2.3", "bad")).status == core::AuthStatus::TempFail));
    f.inner.down = false;
    BOOST_TEST((f.svc->authenticate(req("192.0.2.3", "right")).status == core::AuthStatus::Ok));
    BOOST_TEST(f.sleeps.empty());
}

BOOST_AUTO_TEST_SUITE_END()
