// CIDR allow-lists (IPv4, IPv6, IPv4-mapped) and per-client counter keys.
#include "abuse/NetworkList.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <stdexcept>
#include <string>

using namespace postern::abuse;
namespace bdata = boost::unit_test::data;

namespace {

struct MatchCase {
    std::string spec;
    std::string ip;
    bool match;
};
std::ostream& operator<<(std::ostream& o, const MatchCase& c) { return o << "'" << c.spec << "' ? " << c.ip; }

const MatchCase matchCases[] = {
    {"", "192.0.2.7", false},
    {"192.0.2.0/24", "192.0.2.7", true},
    {"192.0.2.0/24", "192.0.3.7", false},
    {"192.0.2.7", "192.0.2.7", true},       // host without prefix is /32
    {"192.0.2.7", "192.0.2.8", false},
    {"192.0.2.7/24", "192.0.2.200", true},  // host bits ignored
    {"10.0.0.0/8", "10.255.1.2", true},
    {"10.0.0.0/8", "11.0.0.1", false},
    {"0.0.0.0/0", "203.0.113.9", true},
    {"0.0.0.0/0", "2001:db8::1", false},     // an IPv4 network never matches IPv6
    {"192.0.2.0/24", "::ffff:192.0.2.9", true},  // IPv4-mapped client is IPv4
    {"::ffff:192.0.2.0/120", "192.0.2.9", true}, // IPv4-mapped network is IPv4
    {"::ffff:192.0.2.0/120", "192.0.3.9", false},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"2001:db8:1:2::/64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", true},
    {"2001:db8:1:2::/64", "2001:db8:1:3::1", false},
    {"2001:db8::1", "2001:db8::1", true},   // /128
    {"2001:db8::1", "2001:db8::2", false},
    {"2001:db8:1:20::/60", "2001:db8:1:2f::1", true},
    {"2001:db8:1:20::/60", "2001:db8:1:30::1", false},
    {"::/0", "fe80::1", true},
    {"::/0", "192.0.2.1", false},
    {"::1", "::1", true},
    {"192.0.2.1, 198.51.100.0/24  2001:db8::/48", "198.51.100.77", true},
    {"192.0.2.1,198.51.100.0/24,2001:db8::/48", "2001:db8:0:ffff::5", true},
    {"192.0.2.1,\t198.51.100.0/24\n2001:db8::/48", "203.0.113.1", false},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(network_list)

BOOST_DATA_TEST_CASE(matches, bdata::make(matchCases), c) {
    NetworkList list = NetworkList::parse(c.spec);
    BOOST_TEST(list.contains(Poco::Net::IPAddress(c.ip)) == c.match);
}

BOOST_DATA_TEST_CASE(bad_specs_throw,
                     bdata::make({"192.0.2.0/33", "2001:db8::/129", "192.0.2.0/", "192.0.2/24", "example.com",
                                  "192.0.2.0/-1", "192.0.2.0/2x", "/24", "192.0.2.0/0024", "1.2.3.4,bad"}),
                     spec) {
    BOOST_CHECK_THROW(NetworkList::parse(spec), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(counts_entries) {
    BOOST_TEST(NetworkList::parse("").empty());
    BOOST_TEST(NetworkList::parse(" , ").empty());
    BOOST_TEST(NetworkList::parse("192.0.2.1, 2001:db8::/32").size() == 2u);
}

struct KeyCase {
    std::string ip;
    unsigned prefix;
    std::string key;
};
std::ostream& operator<<(std::ostream& o, const KeyCase& c) { return o << c.ip << " /" << c.prefix; }

const KeyCase keyCases[] = {
    {"192.0.2.7", 64, "192.0.2.7"},
    {"::ffff:192.0.2.7", 64, "192.0.2.7"},
    {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
    {"2001:db8:1:2:ffff::9", 64, "2001:db8:1:2::/64"},
    {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
    {"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
    {"2001:db8:1:2:3:4:5:6", 0, "::/0"},
    {"2001:db8::1", 200, "2001:db8::1"},  // clamped to 128
};

BOOST_DATA_TEST_CASE(address_keys, bdata::make(keyCases), c) {
    BOOST_TEST(addressKey(Poco::Net::IPAddress(c.ip), c.prefix) == c.key);
}

BOOST_AUTO_TEST_SUITE_END()
