// A success whose caller checks the penalty itself (POP3 in a cluster: app/ClusterPop3Login)
// is left to the caller, which records it after its verdict: "blocked" when the penalty
// refused the right password, "ok" otherwise (a verified entry: its name is tracked even if
// blocked); failures are still recorded at once.
#include "abuse/AccountSecurity.h"
#include "abuse/AccountSecurityStore.h"
#include "abuse/LoginRecordingAuthService.h"

#include <boost/test/unit_test.hpp>

using namespace postern;
using namespace postern::abuse;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_CASE(a_success_checked_by_the_caller_is_recorded_with_the_callers_verdict) {
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
    AccountSecuritySettings s;
    s.maxIps = 0;
    s.maxNetworks = 0;
    AccountSecurity security(s, store);
    LoginRecordingAuthService auth(inner, security);
    core::AuthRequest req;
    req.user = "ann";
    req.service = "pop3";
    req.client.ip = Poco::Net::IPAddress("192.0.2.7");
    req.mechanism = "USER";
    req.penaltyCheckedByCaller = true;
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::Ok));
    security.flushNow();
    BOOST_TEST(store.logins("ann@example.test", 0).empty());  // left to the caller
    auth.record(req, "ann@example.test", core::AuthStatus::Blocked);
    inner.status = core::AuthStatus::BadCredentials;
    BOOST_TEST((auth.authenticate(req).status == core::AuthStatus::BadCredentials));  // recorded at once
    security.flushNow();
    auto log = store.logins("ann@example.test", 0);
    BOOST_REQUIRE(log.size() == 1u);
    BOOST_TEST(log[0].result == "blocked");
    BOOST_TEST(log[0].protocol == "pop3");
    // The failure is under the name given, "ann": no tracked account, so counted only.
    BOOST_TEST(store.logins("ann", 0).empty());
    BOOST_TEST(store.counters().untrackedLogins == 1u);
    // A blocked login does not count its IP for detection.
    BOOST_TEST(store.totals("ann@example.test", std::chrono::system_clock::now(), 1h).ips == 0u);
}
