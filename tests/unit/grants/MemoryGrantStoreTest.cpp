// In-memory POP-before-SMTP grants: expiry with a fake clock, IPv4/IPv6 keys, IPv6
// prefixes, sweep, concurrency smoke test.
#include "grants/MemoryGrantStore.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <ostream>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace postern;
using grants::MemoryGrantStore;
using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

namespace {

struct FakeClock {
    std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point(1700000000s);
    MemoryGrantStore::Clock fn() {
        return [this] { return now; };
    }
};

core::ClientAddress addr(const std::string& ip) {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress(ip);
    return c;
}

struct KeyCase {
    unsigned prefix;
    std::string granted;
    std::string asked;
    bool match;
};
std::ostream& operator<<(std::ostream& o, const KeyCase& c) {
    return o << c.granted << " /" << c.prefix << " vs " << c.asked;
}

const KeyCase keyCases[] = {
    {128, "192.0.2.7", "192.0.2.7", true},
    {128, "192.0.2.7", "192.0.2.8", false},
    {64, "192.0.2.7", "192.0.2.8", false},  // IPv4 is always exact
    {128, "192.0.2.7", "::ffff:192.0.2.7", true},
    {128, "::ffff:192.0.2.7", "192.0.2.7", true},
    {128, "2001:db8::1", "2001:db8::1", true},
    {128, "2001:db8::1", "2001:db8:0:0::1", true},
    {128, "2001:db8::1", "2001:db8::2", false},
    {64, "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true},
    {64, "2001:db8:1:2::1", "2001:db8:1:3::1", false},
    {56, "2001:db8:1:200::1", "2001:db8:1:2ff::1", true},
    {56, "2001:db8:1:200::1", "2001:db8:1:300::1", false},
    {60, "2001:db8:1:20::1", "2001:db8:1:2f::1", true},
    {60, "2001:db8:1:20::1", "2001:db8:1:30::1", false},
    {0, "2001:db8::1", "fe80::1", true},
    {128, "2001:db8::1", "192.0.2.7", false},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(memory_grant_store)

BOOST_DATA_TEST_CASE(keys, bdata::make(keyCases), c) {
    FakeClock clock;
    MemoryGrantStore store(600s, c.prefix, clock.fn());
    store.grant(addr(c.granted), "bob");
    core::Grant g;
    core::Answer a = store.lookup(addr(c.asked), &g);
    BOOST_TEST((a == (c.match ? core::Answer::Yes : core::Answer::No)));
    if (c.match)
        BOOST_TEST(g.user == "bob");
}

BOOST_AUTO_TEST_CASE(expiry_with_fake_clock) {
    FakeClock clock;
    MemoryGrantStore store(600s, 128, clock.fn());
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::No));
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob"));
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob");
    BOOST_TEST((g.expires == clock.now + 600s));

    clock.now += 599s;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::Yes));
    clock.now += 1s;  // expires == now: expired
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::No));
    BOOST_TEST(store.size() == 0u);  // forgotten lazily
}

BOOST_AUTO_TEST_CASE(renewal_replaces_the_users_grant) {
    FakeClock clock;
    MemoryGrantStore store(600s, 128, clock.fn());
    store.grant(addr("192.0.2.7"), "bob");
    clock.now += 500s;
    store.grant(addr("192.0.2.7"), "bob");
    clock.now += 500s;
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob");
    BOOST_TEST((g.expires == clock.now + 100s));
    BOOST_TEST(store.size() == 1u);
}

BOOST_AUTO_TEST_CASE(users_sharing_an_address_each_keep_their_grant) {
    // Subscribers behind one NAT address: a newer login of one does not take the address
    // from the others; a relay goes on the grant its MAIL FROM belongs to.
    FakeClock clock;
    MemoryGrantStore store(600s, 128, clock.fn());
    store.grant(addr("192.0.2.7"), "bob@example.test", {"bob@example.test", "Sales@Example.Test"});
    clock.now += 100s;
    store.grant(addr("192.0.2.7"), "alice@example.test");
    BOOST_TEST(store.size() == 2u);
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "sales@EXAMPLE.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");  // one of bob's senders, any case
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "Alice@Example.Test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    // Nobody's sender (or <>): the grant that expires last.
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "eve@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    // bob's grant expires first; alice's stays.
    clock.now += 500s;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "alice@example.test");
    BOOST_TEST(store.size() == 1u);  // bob's forgotten lazily
    clock.now += 100s;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "alice@example.test", &g) == core::Answer::No));
}

BOOST_AUTO_TEST_CASE(sweep_removes_only_expired) {
    FakeClock clock;
    MemoryGrantStore store(100s, 128, clock.fn());
    for (int i = 1; i <= 40; ++i)
        store.grant(addr("192.0.2." + std::to_string(i)), "u" + std::to_string(i));
    clock.now += 50s;
    for (int i = 1; i <= 10; ++i)
        store.grant(addr("2001:db8::" + std::to_string(i)), "v" + std::to_string(i));
    BOOST_TEST(store.size() == 50u);
    BOOST_TEST(store.sweep() == 0u);
    clock.now += 50s;
    BOOST_TEST(store.sweep() == 40u);
    BOOST_TEST(store.size() == 10u);
    BOOST_TEST((store.lookup(addr("2001:db8::3"), nullptr) == core::Answer::Yes));
    BOOST_TEST((store.lookup(addr("192.0.2.3"), nullptr) == core::Answer::No));
    clock.now += 50s;
    BOOST_TEST(store.sweep() == 10u);
    BOOST_TEST(store.size() == 0u);
}

BOOST_AUTO_TEST_CASE(key_text) {
    MemoryGrantStore exact(60s, 128);
    BOOST_TEST(exact.keyText(addr("::ffff:192.0.2.7")) == "192.0.2.7");
    BOOST_TEST(exact.keyText(addr("2001:db8::1")) == "2001:db8::1");
    MemoryGrantStore net(60s, 64);
    BOOST_TEST(net.keyText(addr("2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64");
}

BOOST_AUTO_TEST_CASE(invalid_configuration_throws) {
    BOOST_CHECK_THROW(MemoryGrantStore(0s, 128), std::invalid_argument);
    BOOST_CHECK_THROW(MemoryGrantStore(-5s, 128), std::invalid_argument);
    BOOST_CHECK_THROW(MemoryGrantStore(60s, 129), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(concurrent_grants_and_lookups) {
    FakeClock clock;  // not advanced while threads run
    MemoryGrantStore store(3600s, 128, clock.fn());
    constexpr int Threads = 8;
    constexpr int PerThread = 500;
    std::atomic<int> misses{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < PerThread; ++i) {
                core::ClientAddress a = addr("10." + std::to_string(t) + "." + std::to_string(i / 256) + "." +
                                             std::to_string(i % 256));
                store.grant(a, "u" + std::to_string(t));
                core::Grant g;
                if (store.lookup(a, &g) != core::Answer::Yes || g.user != "u" + std::to_string(t))
                    ++misses;
                store.lookup(addr("192.0.2.1"), nullptr);
                if (i % 100 == 0)
                    store.sweep();
            }
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(misses.load() == 0);
    BOOST_TEST(store.size() == std::size_t(Threads * PerThread));
}

BOOST_AUTO_TEST_SUITE_END()
