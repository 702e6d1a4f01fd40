// Client-side deadlines against a "frozen" server: a socket that listens (the kernel
// completes the TCP handshake) but never reads or answers, as slapd under SIGSTOP. Every
// call must give up after its configured timeout with TempFail, the server is marked down
// (later requests and probes fail at once), and nothing is ever a wrong password.
#include "LdapBackend.h"
#include "LdapConfig.h"
#include "unit/ldap/LoopbackListener.h"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace postern::plugins::ldap;
namespace api = postern::plugins::api;
using Clock = std::chrono::steady_clock;

namespace {

// Listens on 127.0.0.1:<ephemeral>, never accepts: connects succeed, nothing answers.
struct SilentListener {
    int fd = -1;
    int port = 0;
    SilentListener() { fd = postern::test::listenOnLoopback(port); }
    ~SilentListener() { ::close(fd); }
    std::string uri() const { return postern::test::ldapUri(port); }
};

// Deadlines of 300ms; probe_interval 60s: the background probe stays out of the way.
std::map<std::string, std::string> config(const std::string& uri) { return postern::test::shortDeadlineConfig(uri); }

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ldap_deadlines)

BOOST_AUTO_TEST_CASE(aFrozenServerCostsOneDeadlineThenFailsAtOnce) {
    SilentListener frozen;
    LdapBackend backend(LdapConfig::fromMap(config(frozen.uri())));
    auto t0 = Clock::now();
    auto a = backend.authenticate("alice@example.test", "pw", "smtp", "127.0.0.1");
    double took = secondsSince(t0);
    BOOST_TEST((a.status == api::Status::TempFail), a.detail);
    BOOST_TEST(a.detail.find("Timed out") != std::string::npos, a.detail);
    BOOST_TEST(took >= 0.25);
    BOOST_TEST(took < 3.0);  // 0.3 s deadline + a generous margin for a loaded machine
    // Marked down: the next request and the readiness probe do not wait again.
    t0 = Clock::now();
    auto b = backend.lookup("alice@example.test");
    BOOST_TEST((b.status == api::Status::TempFail), b.detail);
    auto p = backend.probe();
    BOOST_TEST((p.status == api::Status::TempFail));
    BOOST_TEST(p.detail.find("no LDAP server is up") != std::string::npos, p.detail);
    BOOST_TEST(secondsSince(t0) < 0.25);
}

BOOST_AUTO_TEST_CASE(probeOnAFrozenServerIsBoundedByTheDeadline) {
    SilentListener frozen;
    LdapBackend backend(LdapConfig::fromMap(config(frozen.uri())));
    auto t0 = Clock::now();
    auto p = backend.probe();
    BOOST_TEST((p.status == api::Status::TempFail));
    BOOST_TEST(p.detail.find(frozen.uri()) != std::string::npos, p.detail);
    BOOST_TEST(secondsSince(t0) < 3.0);
}

BOOST_AUTO_TEST_CASE(concurrentRequestsOnAFrozenServerAreAllAnsweredWithinOneDeadline) {
    SilentListener frozen;
    LdapBackend backend(LdapConfig::fromMap(config(frozen.uri())));  // pool_size 2
    std::vector<std::thread> threads;
    std::vector<api::Status> got(8, api::Status::Ok);
    std::vector<double> took(8, 0);
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&, i] {
            auto t0 = Clock::now();
            got[i] = backend.authenticate("user" + std::to_string(i) + "@example.test", "pw", "smtp", "").status;
            took[i] = secondsSince(t0);
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < 8; ++i) {
        BOOST_TEST((got[i] == api::Status::TempFail));
        // Those holding a connection time out; those waiting for one stop waiting when the
        // server is marked down: nobody pays two deadlines (0.6 s) plus much margin.
        BOOST_TEST(took[i] < 3.0);
    }
}

BOOST_AUTO_TEST_CASE(nothingListeningIsTempFailAndMarksDown) {
    SilentListener gone;
    const std::string uri = gone.uri();
    ::close(gone.fd);
    gone.fd = ::socket(AF_INET, SOCK_STREAM, 0);  // the destructor closes something harmless
    LdapBackend backend(LdapConfig::fromMap(config(uri)));
    auto p = backend.probe();
    BOOST_TEST((p.status == api::Status::TempFail));
    BOOST_TEST(p.detail.find("Can't contact LDAP server") != std::string::npos, p.detail);
}

BOOST_AUTO_TEST_SUITE_END()
