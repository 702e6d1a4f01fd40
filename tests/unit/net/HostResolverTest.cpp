// A service's host name to an address within a deadline. getaddrinfo is replaced in this
// test program (the executable's definition comes first for POCO too): names under
// "slow.test" take 1.5 s to fail, as a resolver that drops queries does; every other name
// goes to the C library's.
#include "net/HostResolver.h"

#include <boost/test/unit_test.hpp>

#include <dlfcn.h>
#include <netdb.h>

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {
std::atomic<int> slowLookups{0};

bool isSlow(const char* node) {
    const std::string_view n = node ? node : "";
    return n.size() >= 9 && n.substr(n.size() - 9) == "slow.test";
}
}  // namespace

extern "C" int getaddrinfo(const char* node, const char* service, const struct addrinfo* hints,
                           struct addrinfo** res) {
    if (isSlow(node)) {
        ++slowLookups;
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        return EAI_AGAIN;
    }
    using Real = int (*)(const char*, const char*, const struct addrinfo*, struct addrinfo**);
    static Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "getaddrinfo"));
    return real(node, service, hints, res);
}

using postern::net::HostResolver;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(host_resolver)

BOOST_AUTO_TEST_CASE(ip_literals_are_not_looked_up) {
    std::string error;
    auto a = HostResolver("192.0.2.7", 10023).resolve(HostResolver::Clock::now(), error);
    BOOST_REQUIRE(a.has_value());
    BOOST_TEST(a->toString() == "192.0.2.7:10023");
    auto b = HostResolver("::1", 11332).resolve(HostResolver::Clock::now(), error);
    BOOST_REQUIRE(b.has_value());
    BOOST_TEST(b->toString() == "[::1]:11332");
}

BOOST_AUTO_TEST_CASE(a_name_is_looked_up) {
    std::string error;
    auto a = HostResolver::forHost("localhost", 8891).resolve(HostResolver::Clock::now() + 5s, error);
    BOOST_REQUIRE_MESSAGE(a.has_value(), error);
    BOOST_TEST(a->host().isLoopback());
    BOOST_TEST(a->port() == 8891);
    BOOST_TEST(&HostResolver::forHost("localhost", 8891) == &HostResolver::forHost("localhost", 8891));
}

// Review finding: "inet:name:port" was looked up with no timeout, so a resolver that drops
// queries held each session far past milter.connect_timeout / policy.timeout.
BOOST_AUTO_TEST_CASE(a_hanging_lookup_ends_at_the_deadline_and_is_shared) {
    slowLookups = 0;
    HostResolver& r = HostResolver::forHost("milter.slow.test", 8891);
    std::vector<std::thread> callers;
    std::atomic<int> timedOut{0};
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i)
        callers.emplace_back([&] {
            std::string error;
            if (!r.resolve(HostResolver::Clock::now() + 200ms, error) && error.find("timed out") != std::string::npos)
                ++timedOut;
        });
    for (auto& t : callers) t.join();
    BOOST_TEST(timedOut.load() == 5);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 1s));
    BOOST_TEST(slowLookups.load() == 1);  // one lookup, not one per caller
    // Waiting for it: its failure is the answer.
    std::string error;
    BOOST_TEST(!r.resolve(HostResolver::Clock::now() + 5s, error));
    BOOST_TEST(error.find("milter.slow.test") != std::string::npos);
    BOOST_TEST(error.find("timed out") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
