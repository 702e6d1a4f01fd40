// One log line per key and interval, with the count of events not logged in between.
#include "abuse/LogThrottle.h"
#include "AbuseTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <thread>
#include <vector>

using namespace postern::abuse;
using postern::abuse::test::FakeClock;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(log_throttle)

BOOST_AUTO_TEST_CASE(first_event_logged_then_suppressed_until_interval) {
    FakeClock clock;
    LogThrottle t(60s, 100, clock.fn());
    auto first = t.admit("rate 192.0.2.1");
    BOOST_REQUIRE(first.has_value());
    BOOST_TEST(*first == 0u);
    for (int i = 0; i < 5; ++i) BOOST_TEST(!t.admit("rate 192.0.2.1").has_value());
    clock.advance(59s);
    BOOST_TEST(!t.admit("rate 192.0.2.1").has_value());
    clock.advance(1s);
    auto again = t.admit("rate 192.0.2.1");
    BOOST_REQUIRE(again.has_value());
    BOOST_TEST(*again == 6u);  // the five and the one at 59 s
    BOOST_TEST(!t.admit("rate 192.0.2.1").has_value());
}

BOOST_AUTO_TEST_CASE(keys_are_independent) {
    FakeClock clock;
    LogThrottle t(60s, 100, clock.fn());
    BOOST_TEST(t.admit("a").has_value());
    BOOST_TEST(t.admit("b").has_value());
    BOOST_TEST(!t.admit("a").has_value());
    BOOST_TEST(!t.admit("b").has_value());
}

BOOST_AUTO_TEST_CASE(bounded_memory_under_a_flood_of_sources) {
    FakeClock clock;
    LogThrottle t(60s, 10, clock.fn());
    int logged = 0;
    for (int i = 0; i < 1000; ++i)
        if (t.admit("k" + std::to_string(i))) ++logged;
    BOOST_TEST(t.trackedKeys() <= 10u);
    BOOST_TEST(logged == 10);
    clock.advance(60s);  // old entries expire: new sources are logged again
    BOOST_TEST(t.admit("fresh").has_value());
    BOOST_TEST(t.trackedKeys() <= 10u);
}

BOOST_AUTO_TEST_CASE(a_sweep_keeps_the_counts_still_owed) {
    // Review finding: once the table was full, every call swept it, and an expired key that
    // had suppressed events lost its count (its next line said suppressed=0).
    FakeClock clock;
    LogThrottle t(60s, 4, clock.fn());
    BOOST_TEST(t.admit("busy").has_value());
    for (int i = 0; i < 3; ++i) BOOST_TEST(!t.admit("busy").has_value());
    for (int i = 0; i < 3; ++i) BOOST_TEST(t.admit("quiet" + std::to_string(i)).has_value());  // full now
    clock.advance(61s);
    BOOST_TEST(t.admit("new").has_value());  // sweeps: the quiet ones go, "busy" stays
    auto again = t.admit("busy");
    BOOST_REQUIRE(again.has_value());
    BOOST_TEST(*again == 3u);
}

BOOST_AUTO_TEST_CASE(one_line_per_interval_under_threads) {
    FakeClock clock;
    LogThrottle t(60s, 100, clock.fn());
    std::atomic<int> logged{0};
    std::vector<std::thread> threads;
    for (int n = 0; n < 4; ++n)
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (t.admit("same")) ++logged;
        });
    for (auto& th : threads) th.join();
    BOOST_TEST(logged.load() == 1);
    clock.advance(60s);
    auto next = t.admit("same");
    BOOST_REQUIRE(next.has_value());
    BOOST_TEST(*next == 3999u);
}

BOOST_AUTO_TEST_SUITE_END()
