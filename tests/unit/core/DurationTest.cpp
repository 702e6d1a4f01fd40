// The one duration syntax (core/Duration.h): every unit, blanks and case, bad inputs, overflow.
#include "core/Duration.h"

#include "unit/core/ErrorText.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <limits>
#include <ostream>
#include <stdexcept>
#include <string>

using postern::core::parseDuration;
namespace bdata = boost::unit_test::data;

namespace {

struct GoodCase {
    std::string text;
    std::int64_t ms;
};
std::ostream& operator<<(std::ostream& o, const GoodCase& c) { return o << "'" << c.text << "'"; }

const GoodCase goodCases[] = {
    {"500ms", 500},
    {"0ms", 0},
    {"3s", 3'000},
    {"5m", 300'000},
    {"2h", 7'200'000},
    {"1d", 86'400'000},
    {"5d", 432'000'000},
    {"30", 30'000},  // a bare number is seconds
    {"0", 0},
    {"  10s\t", 10'000},
    {"5 s", 5'000},
    {"5M", 300'000},  // units are case-insensitive: M is minutes, not months
    {"250MS", 250},
    {"007s", 7'000},
    {"9223372036854775807ms", std::numeric_limits<std::int64_t>::max()},
    {"9223372036854775s", 9'223'372'036'854'775'000},
    {"106751991167d", 106'751'991'167LL * 86'400'000},
};

BOOST_DATA_TEST_CASE(accepted, bdata::make(goodCases), c) { BOOST_TEST(parseDuration(c.text).count() == c.ms); }

struct BadCase {
    std::string text;
    std::string message;
};
std::ostream& operator<<(std::ostream& o, const BadCase& c) { return o << "'" << c.text << "'"; }

const BadCase badCases[] = {
    {"", "bad duration '': expected a number with a unit"},
    {"   ", "expected a number"},
    {"s", "expected a number"},
    {"-1s", "bad duration '-1s': expected a number"},
    {"+1s", "expected a number"},
    {"1.5s", "bad duration '1.5s': unknown unit (use ms, s, m, h or d)"},
    {"5 parsecs", "unknown unit"},
    {"5sec", "unknown unit"},
    {"5us", "unknown unit"},
    {"5w", "unknown unit"},
    {"5s5", "unknown unit"},
    {"1h30m", "unknown unit"},
    {"9223372036854775808ms", "bad duration '9223372036854775808ms': too large"},
    {"9223372036854776s", "too large"},
    {"106751991168d", "too large"},
    {"99999999999999999999999999s", "too large"},
};

BOOST_DATA_TEST_CASE(refused_with_a_clear_error, bdata::make(badCases), c) {
    const std::string error = postern::test::errorOf([&] { parseDuration(c.text); });
    BOOST_TEST(error.find(c.message) != std::string::npos, "'" << error << "' should contain '" << c.message << "'");
}

}  // namespace
