#include "delivery/RetrySchedule.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

using namespace postern::delivery;
using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(retry_schedule)

namespace {
const std::vector<std::chrono::milliseconds> Schedule = {1min, 5min, 15min, 30min, 1h, 2h, 4h};
}

// failed attempts -> delay: the schedule in order, then the last step repeating.
BOOST_DATA_TEST_CASE(delay_follows_the_schedule_and_the_last_repeats,
                     bdata::make({0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 100u}) ^
                         bdata::make({0L, 60L, 300L, 900L, 1800L, 3600L, 7200L, 14400L, 14400L, 14400L}),
                     failed, seconds) {
    BOOST_TEST(std::chrono::duration_cast<std::chrono::seconds>(retryDelay(Schedule, failed)).count() == seconds);
}

BOOST_AUTO_TEST_CASE(empty_schedule_means_at_once) { BOOST_TEST(retryDelay({}, 3).count() == 0); }

BOOST_AUTO_TEST_CASE(next_attempt_never_later_than_expiry) {
    SysTime now(std::chrono::seconds(1'000'000));
    BOOST_TEST((nextAttemptTime(Schedule, 1, now, now + 1h) == now + 1min));
    BOOST_TEST((nextAttemptTime(Schedule, 7, now, now + 1h) == now + 1h));      // 4h capped at expiry
    // Already expired (its bounce could not be sent): the schedule, not at once again.
    BOOST_TEST((nextAttemptTime(Schedule, 7, now, now - 1min) == now + 4h));
    BOOST_TEST((nextAttemptTime(Schedule, 1, now, now) == now + 1min));
}

BOOST_AUTO_TEST_SUITE_END()
