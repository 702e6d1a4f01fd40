// Bucketed sliding windows: strict counting within the window, expiry within one bucket
// after it, clock stepping back, saturation.
#include "abuse/SlidingWindow.h"

#include <boost/test/unit_test.hpp>

#include <limits>
#include <stdexcept>

using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {
// Aligned to a 5-minute bucket boundary so bucket arithmetic in the tests is exact.
const postern::core::TimePoint T0 = postern::core::TimePoint(std::chrono::seconds(1700000100));
}

BOOST_AUTO_TEST_SUITE(sliding_window)

BOOST_AUTO_TEST_CASE(counts_within_window_and_forgets_after) {
    SlidingWindow w(1h, 12);
    BOOST_TEST(w.total(T0) == 0u);
    w.add(T0, 3);
    w.add(T0 + 10min, 2);
    BOOST_TEST(w.total(T0 + 10min) == 5u);
    // Still within the hour: both count.
    BOOST_TEST(w.total(T0 + 59min) == 5u);
    // A bucket later than the hour the first event may still count (strict side)...
    BOOST_TEST(w.total(T0 + 64min) == 5u);
    // ...but never past window + bucket width.
    BOOST_TEST(w.total(T0 + 65min) == 2u);
    BOOST_TEST(w.total(T0 + 75min) == 0u);
    BOOST_TEST(w.isEmpty(T0 + 75min));
}

BOOST_AUTO_TEST_CASE(never_undercounts_any_window) {
    // One event per minute for three hours; at every minute the count must be at least the
    // true number of events in the last 60 minutes and at most that plus one bucket's worth.
    SlidingWindow w(1h, 12);
    for (int m = 0; m < 180; ++m) {
        postern::core::TimePoint t = T0 + std::chrono::minutes(m);
        w.add(t, 1);
        std::uint64_t trueCount = static_cast<std::uint64_t>(std::min(m + 1, 60));
        std::uint64_t total = w.total(t);
        BOOST_TEST(total >= trueCount);
        BOOST_TEST(total <= trueCount + 5);
    }
}

BOOST_AUTO_TEST_CASE(long_gap_clears_everything) {
    SlidingWindow w(1min, 12);
    w.add(T0, 7);
    BOOST_TEST(w.total(T0 + 24h) == 0u);
    w.add(T0 + 24h, 1);
    BOOST_TEST(w.total(T0 + 24h) == 1u);
}

BOOST_AUTO_TEST_CASE(clock_stepping_back_keeps_counting) {
    SlidingWindow w(1h, 12);
    w.add(T0 + 30min, 1);
    w.add(T0, 1);  // earlier than the newest bucket: counted in the newest
    BOOST_TEST(w.total(T0) == 2u);
    BOOST_TEST(w.total(T0 + 30min + 65min) == 0u);
}

BOOST_AUTO_TEST_CASE(saturates) {
    SlidingWindow w(1h, 1);
    w.add(T0, std::numeric_limits<std::uint32_t>::max());
    w.add(T0, 5);
    BOOST_TEST(w.total(T0) == std::numeric_limits<std::uint32_t>::max());
}

BOOST_AUTO_TEST_CASE(rejects_bad_parameters) {
    BOOST_CHECK_THROW(SlidingWindow(0ms, 12), std::invalid_argument);
    BOOST_CHECK_THROW(SlidingWindow(1h, 0), std::invalid_argument);
    BOOST_CHECK_THROW(SlidingWindow(1h, 3601), std::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
