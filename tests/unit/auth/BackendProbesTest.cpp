// Tests for BackendProbes (readiness of the auth backends): answers per backend in chain
// order, the short cache, one probe at a time per backend, a reason even when none is given,
// and the down/up log lines.
#include "auth/BackendProbes.h"

#include "unit/auth/AuthTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace postern::auth {
namespace {

namespace api = plugins::api;
using namespace std::chrono_literals;

// A backend whose probe answer the test sets; counts probes and can be slow.
class SwitchableBackend : public test::VerifyingBackend {
public:
    api::ProbeAnswer probe() noexcept override {
        int now = ++running;
        maxRunning = std::max(maxRunning.load(), now);
        ++probes;
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
        --running;
        return up ? api::ProbeAnswer{api::Status::Ok, ""} : api::ProbeAnswer{api::Status::TempFail, "directory frozen"};
    }
    std::atomic<bool> up{true};
    std::atomic<int> probes{0};
    std::atomic<int> running{0};
    std::atomic<int> maxRunning{0};
    std::chrono::milliseconds delay{0};
};

// Down without saying why.
class SilentBackend : public test::VerifyingBackend {
public:
    api::ProbeAnswer probe() noexcept override { return {api::Status::TempFail, ""}; }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(BackendProbesTest)

BOOST_AUTO_TEST_CASE(answersEveryBackendInChainOrderWithTheReason) {
    SwitchableBackend ldap;
    test::TempFailBackend pg;
    BackendProbes probes({{"ldap1", &ldap}, {"pg", &pg}}, 0ms);
    auto h = probes.check();
    BOOST_REQUIRE(h.size() == 2u);
    BOOST_TEST(h[0].backend == "ldap1");
    BOOST_TEST(h[0].up);
    BOOST_TEST(h[1].backend == "pg");
    BOOST_TEST(!h[1].up);
    BOOST_TEST(h[1].detail == "server down");
}

BOOST_AUTO_TEST_CASE(anEmptyReasonStillSaysSomething) {
    SilentBackend b;
    BackendProbes probes({{"x", &b}}, 0ms);
    auto h = probes.check();
    BOOST_TEST(!h[0].up);
    BOOST_TEST(h[0].detail == "cannot answer");
}

BOOST_AUTO_TEST_CASE(cachesTheAnswerForMaxAge) {
    SwitchableBackend b;
    BackendProbes probes({{"ldap1", &b}}, 300ms);
    BOOST_TEST(probes.check()[0].up);
    b.up = false;
    // Within max age: the cached answer, no new probe.
    BOOST_TEST(probes.check()[0].up);
    BOOST_TEST(b.probes.load() == 1);
    std::this_thread::sleep_for(350ms);
    auto h = probes.check();
    BOOST_TEST(!h[0].up);
    BOOST_TEST(h[0].detail == "directory frozen");
    BOOST_TEST(b.probes.load() == 2);
}

BOOST_AUTO_TEST_CASE(concurrentCallersShareOneProbe) {
    SwitchableBackend b;
    b.delay = 200ms;
    BackendProbes probes({{"ldap1", &b}}, 1000ms);
    std::vector<std::thread> threads;
    std::atomic<int> upAnswers{0};
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&] {
            if (probes.check()[0].up) ++upAnswers;
        });
    }
    for (auto& t : threads) t.join();
    BOOST_TEST(upAnswers.load() == 8);
    BOOST_TEST(b.probes.load() == 1);
    BOOST_TEST(b.maxRunning.load() == 1);
}

BOOST_AUTO_TEST_CASE(lastKnownNeverProbesNorWaitsForAProbe) {
    // /metrics reads this: a scrape must not hold an HTTP thread on a frozen backend.
    SwitchableBackend b;
    BackendProbes probes({{"ldap1", &b}}, 0ms);
    BOOST_TEST(probes.lastKnown().empty());  // not probed yet: left out
    BOOST_TEST(b.probes.load() == 0);
    probes.check();
    b.up = false;
    b.delay = 2000ms;
    std::thread slow([&] { probes.check(); });  // a probe of the now frozen backend
    while (b.running.load() == 0) std::this_thread::sleep_for(1ms);
    const auto t0 = std::chrono::steady_clock::now();
    auto h = probes.lastKnown();
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 500ms));
    BOOST_REQUIRE(h.size() == 1u);
    BOOST_TEST(h[0].up);  // the answer before the probe in progress
    slow.join();
    BOOST_TEST(!probes.lastKnown()[0].up);
    BOOST_TEST(b.probes.load() == 2);
}

BOOST_AUTO_TEST_CASE(logsOneLineWhenABackendGoesDownAndWhenItIsBack) {
    auto log = test::captureLog("postern.auth");
    SwitchableBackend b;
    BackendProbes probes({{"ldap1", &b}}, 0ms);
    probes.check();
    BOOST_TEST(log->lines().empty());
    b.up = false;
    probes.check();
    probes.check();
    b.up = true;
    probes.check();
    probes.check();
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 2u);
    BOOST_TEST(lines[0].find("event=backend.down backend=ldap1 detail=\"directory frozen\"") != std::string::npos,
               lines[0]);
    BOOST_TEST(lines[1].find("event=backend.up backend=ldap1") != std::string::npos, lines[1]);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
