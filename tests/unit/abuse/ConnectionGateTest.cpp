// Connection admission: per-address concurrency and rate per listener, global cap,
// allow-lists, IPv6 prefixes, RAII tickets, idle cleanup, and invariants under threads.
#include "abuse/ConnectionGate.h"
#include "AbuseTestSupport.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <ostream>
#include <thread>
#include <vector>

using namespace postern::abuse;
using postern::abuse::test::addr;
using postern::abuse::test::FakeClock;
using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

namespace {

// The limits these tests exercise (the shipped defaults differ: see the key table).
ConnectionGateSettings testSettings() {
    ConnectionGateSettings s;
    s.defaults = ConnectionLimits{20, 60};
    s.maxConcurrentTotal = 1000;
    s.ipv6Prefix = 64;
    return s;
}

struct Fixture {
    FakeClock clock;
    ConnectionGateSettings settings = testSettings();
};

bool refusedWith(const Admission& a, Refusal r) { return !a && a.refusal() == r; }

}  // namespace

BOOST_AUTO_TEST_SUITE(connection_gate)

BOOST_AUTO_TEST_CASE(defaults) {
    // Nothing is limited unless configured: the one default of every connections.* key
    // lives in the key table, the struct carries none of its own.
    ConnectionGateSettings s;
    BOOST_TEST(s.defaults.maxConcurrentPerIp == 0u);
    BOOST_TEST(s.defaults.maxPerMinutePerIp == 0u);
    BOOST_TEST(s.maxConcurrentTotal == 0u);
    BOOST_TEST(s.ipv6Prefix == 0u);
    BOOST_TEST(std::string(refusalName(Refusal::RateFromIp)) == "rate_from_ip");
}

BOOST_AUTO_TEST_CASE(concurrent_per_ip_then_release_frees_a_slot) {
    Fixture f;
    ConnectionGate gate(f.settings, f.clock.fn());
    const auto ip = addr("192.0.2.7");
    std::vector<Admission> held;
    for (int i = 0; i < 20; ++i) {
        held.push_back(gate.admit("smtp", ip));
        BOOST_REQUIRE(held.back().isAdmitted());
    }
    BOOST_TEST(gate.activeFrom("smtp", ip) == 20u);
    BOOST_TEST(refusedWith(gate.admit("smtp", ip), Refusal::TooManyFromIp));
    BOOST_TEST(gate.admit("smtp", addr("192.0.2.8")).isAdmitted());  // another address
    BOOST_TEST(gate.admit("pop3", ip).isAdmitted());                 // another listener
    held.pop_back();  // ticket destroyed: slot released
    BOOST_TEST(gate.activeFrom("smtp", ip) == 19u);
    BOOST_TEST(gate.admit("smtp", ip).isAdmitted());
    held.clear();
    BOOST_TEST(gate.active() == 0u);
}

BOOST_AUTO_TEST_CASE(rate_per_minute_slides) {
    Fixture f;
    ConnectionGate gate(f.settings, f.clock.fn());
    const auto ip = addr("192.0.2.7");
    for (int i = 0; i < 60; ++i) {
        BOOST_REQUIRE(gate.admit("smtp", ip).isAdmitted());  // released at once
        f.clock.advance(500ms);
    }
    BOOST_TEST(gate.active() == 0u);
    BOOST_TEST(refusedWith(gate.admit("smtp", ip), Refusal::RateFromIp));
    // Refusals do not count; once a minute (plus at most a 5 s bucket) passed since the
    // first connections, some room is back, all of it after 65 s from the last.
    f.clock.advance(60s);
    f.clock.advance(5s);
    BOOST_TEST(gate.admit("smtp", ip).isAdmitted());
    f.clock.advance(65s);
    for (int i = 0; i < 59; ++i)
        BOOST_REQUIRE(gate.admit("smtp", ip).isAdmitted());
}

BOOST_AUTO_TEST_CASE(per_listener_limits) {
    Fixture f;
    f.settings.listeners["submission"] = ConnectionLimits{2, 0};
    f.settings.listeners["mx"] = ConnectionLimits{0, 3};
    ConnectionGate gate(f.settings, f.clock.fn());
    const auto ip = addr("192.0.2.7");
    Admission a = gate.admit("submission", ip), b = gate.admit("submission", ip);
    BOOST_TEST((a && b));
    BOOST_TEST(refusedWith(gate.admit("submission", ip), Refusal::TooManyFromIp));
    std::vector<Admission> mx;
    for (int i = 0; i < 3; ++i)
        mx.push_back(gate.admit("mx", ip));
    BOOST_TEST(refusedWith(gate.admit("mx", ip), Refusal::RateFromIp));
    BOOST_TEST(gate.limitsFor("pop3").maxConcurrentPerIp == 20u);
}

BOOST_AUTO_TEST_CASE(global_cap_counts_everyone_including_allow_listed) {
    Fixture f;
    f.settings.maxConcurrentTotal = 5;
    f.settings.allowNetworks = "10.0.0.0/8";
    ConnectionGate gate(f.settings, f.clock.fn());
    std::vector<Admission> held;
    for (int i = 0; i < 3; ++i)
        held.push_back(gate.admit("smtp", addr("192.0.2." + std::to_string(i + 1))));
    for (int i = 0; i < 2; ++i)
        held.push_back(gate.admit("smtp", addr("10.0.0." + std::to_string(i + 1))));
    BOOST_TEST(gate.active() == 5u);
    BOOST_TEST(refusedWith(gate.admit("smtp", addr("192.0.2.99")), Refusal::TooManySessions));
    BOOST_TEST(refusedWith(gate.admit("smtp", addr("10.9.9.9")), Refusal::TooManySessions));
    BOOST_TEST(gate.active() == 5u);  // refusals gave their slot back
    held.erase(held.begin());
    BOOST_TEST(gate.admit("smtp", addr("192.0.2.99")).isAdmitted());
}

struct AllowCase {
    std::string allow;
    std::string ip;
    bool exempt;
};
std::ostream& operator<<(std::ostream& o, const AllowCase& c) { return o << c.allow << " ? " << c.ip; }
const AllowCase allowCases[] = {
    {"192.0.2.0/24", "192.0.2.50", true},
    {"192.0.2.0/24", "192.0.3.50", false},
    {"2001:db8:100::/40", "2001:db8:1ff::1", true},
    {"2001:db8:100::/40", "2001:db8:200::1", false},
    {"192.0.2.0/24", "::ffff:192.0.2.50", true},
};

BOOST_DATA_TEST_CASE(allow_list_skips_per_ip_limits, bdata::make(allowCases), c) {
    Fixture f;
    f.settings.defaults = ConnectionLimits{1, 2};
    f.settings.allowNetworks = c.allow;
    ConnectionGate gate(f.settings, f.clock.fn());
    std::vector<Admission> held;
    int admitted = 0;
    for (int i = 0; i < 5; ++i) {
        held.push_back(gate.admit("smtp", addr(c.ip)));
        admitted += held.back().isAdmitted() ? 1 : 0;
    }
    BOOST_TEST(admitted == (c.exempt ? 5 : 1));
    BOOST_TEST(gate.active() == unsigned(admitted));
}

BOOST_AUTO_TEST_CASE(ipv6_prefix_shares_limits) {
    Fixture f;
    f.settings.defaults = ConnectionLimits{2, 0};
    ConnectionGate gate(f.settings, f.clock.fn());
    Admission a = gate.admit("smtp", addr("2001:db8:1:2::1"));
    Admission b = gate.admit("smtp", addr("2001:db8:1:2::2"));
    BOOST_TEST((a && b));
    BOOST_TEST(refusedWith(gate.admit("smtp", addr("2001:db8:1:2:ffff::3")), Refusal::TooManyFromIp));
    BOOST_TEST(gate.admit("smtp", addr("2001:db8:1:3::1")).isAdmitted());
}

BOOST_AUTO_TEST_CASE(ticket_moves_and_releases_once) {
    Fixture f;
    ConnectionGate gate(f.settings, f.clock.fn());
    const auto ip = addr("192.0.2.7");
    Admission a = gate.admit("smtp", ip);
    Admission b = std::move(a);
    BOOST_TEST(!a.isAdmitted());
    BOOST_TEST(b.isAdmitted());
    BOOST_TEST(gate.active() == 1u);
    Admission c = gate.admit("smtp", ip);
    c = std::move(b);  // c's own slot released, b's taken over
    BOOST_TEST(gate.active() == 1u);
    BOOST_TEST(gate.activeFrom("smtp", ip) == 1u);
    c.release();
    c.release();
    BOOST_TEST(gate.active() == 0u);
    BOOST_TEST(gate.activeFrom("smtp", ip) == 0u);
    ConnectionGateSettings tinySettings;
    tinySettings.maxConcurrentTotal = 1;
    ConnectionGate tiny(tinySettings, f.clock.fn());
    Admission keep = tiny.admit("smtp", ip);
    Admission refused = tiny.admit("smtp", ip);
    BOOST_TEST(std::string(refusalName(refused.refusal())) == "too_many_sessions");
    refused.release();  // a refusal holds nothing
}

BOOST_AUTO_TEST_CASE(idle_entries_are_forgotten) {
    Fixture f;
    ConnectionGate gate(f.settings, f.clock.fn());
    for (int i = 0; i < 100; ++i)
        gate.admit("smtp", addr("198.51.100." + std::to_string(i + 1)));
    BOOST_TEST(gate.trackedKeys() == 100u);  // still inside the rate window
    f.clock.advance(66s);
    BOOST_TEST(gate.sweep() == 100u);
    BOOST_TEST(gate.trackedKeys() == 0u);
    // admit() sweeps a shard on its own every 256th call to it.
    for (int i = 0; i < 100; ++i)
        gate.admit("smtp", addr("198.51.100." + std::to_string(i + 1)));
    f.clock.advance(66s);
    for (int i = 0; i < 256; ++i)
        gate.admit("mx", addr("203.0.113.1"));  // one shard; refused by rate after 60
    BOOST_TEST(gate.trackedKeys() < 101u);
    // Releasing the last connection of an address whose window is empty drops it at once.
    Admission a = gate.admit("pop3", addr("192.0.2.1"));
    f.clock.advance(66s);
    a.release();
    BOOST_TEST(gate.activeFrom("pop3", addr("192.0.2.1")) == 0u);
}

BOOST_AUTO_TEST_CASE(concurrent_admissions_never_exceed_limits) {
    FakeClock clock;
    ConnectionGateSettings s;
    s.defaults = ConnectionLimits{5, 0};
    s.maxConcurrentTotal = 12;
    ConnectionGate gate(s, clock.fn());
    constexpr int Threads = 8;
    std::atomic<int> inFlightShared{0}, maxShared{0}, inFlightTotal{0}, maxTotal{0};
    std::atomic<int> admittedCount{0};
    auto bumpMax = [](std::atomic<int>& max, int v) {
        int m = max.load();
        while (v > m && !max.compare_exchange_weak(m, v)) {
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 3000; ++i) {
                const bool shared = (i + t) % 2 == 0;
                auto ip = shared ? addr("192.0.2.1") : addr("198.51.100." + std::to_string(t + 1));
                Admission a = gate.admit("smtp", ip);
                if (!a)
                    continue;
                admittedCount++;
                bumpMax(maxTotal, ++inFlightTotal);
                if (shared)
                    bumpMax(maxShared, ++inFlightShared);
                std::this_thread::yield();
                if (shared)
                    --inFlightShared;
                --inFlightTotal;
            }
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(admittedCount.load() > 0);
    BOOST_TEST(maxShared.load() <= 5);
    BOOST_TEST(maxTotal.load() <= 12);
    BOOST_TEST(gate.active() == 0u);
    BOOST_TEST(gate.activeFrom("smtp", addr("192.0.2.1")) == 0u);
}

BOOST_AUTO_TEST_CASE(bad_settings_throw) {
    ConnectionGateSettings s;
    s.ipv6Prefix = 129;
    BOOST_CHECK_THROW(ConnectionGate{s}, std::invalid_argument);
    s = {};
    s.allowNetworks = "nope";
    BOOST_CHECK_THROW(ConnectionGate{s}, std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
