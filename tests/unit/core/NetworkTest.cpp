// The core address vocabulary (core/Network.h): strict address text, networks and lists
// (PROXY trust, abuse allow-lists), IPv4-mapped IPv6 both ways, every prefix length, and the
// address keys stored in the shared PostgreSQL tables.
#include "core/Network.h"

#include "unit/core/ErrorText.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <array>
#include <ostream>
#include <stdexcept>
#include <string>

using namespace postern::core;
namespace bdata = boost::unit_test::data;
using Poco::Net::IPAddress;
using postern::test::errorOf;

namespace {

// --- matching -----------------------------------------------------------------------------

struct MatchCase {
    std::string spec;
    std::string ip;
    bool match;
};
std::ostream& operator<<(std::ostream& o, const MatchCase& c) { return o << "'" << c.spec << "' ? " << c.ip; }

const MatchCase matchCases[] = {
    {"", "192.0.2.7", false},  // the empty list trusts nobody
    {"", "::1", false},
    {" , \t\n", "10.0.0.1", false},
    {"192.0.2.0/24", "192.0.2.7", true},
    {"192.0.2.0/24", "192.0.3.7", false},
    {"192.0.2.7", "192.0.2.7", true},  // a host without prefix is /32
    {"192.0.2.7", "192.0.2.8", false},
    {"10.0.0.0/8", "10.255.1.2", true},
    {"10.0.0.0/8", "11.0.0.1", false},
    {"192.168.1.128/25", "192.168.1.128", true},
    {"192.168.1.128/25", "192.168.1.255", true},
    {"192.168.1.128/25", "192.168.1.127", false},
    {"172.16.0.0/12", "172.31.255.255", true},
    {"172.16.0.0/12", "172.32.0.0", false},
    {"0.0.0.0/0", "203.0.113.9", true},  // explicit: every IPv4 client
    {"0.0.0.0/0", "2001:db8::1", false},  // an IPv4 network never matches IPv6
    {"0.0.0.0/0", "::ffff:203.0.113.9", true},
    {"::/0", "fe80::1", true},
    {"::/0", "192.0.2.1", false},  // nor an IPv6 network IPv4
    {"::/0", "::ffff:192.0.2.1", false},  // a mapped client is IPv4
    {"::1", "::1", true},
    {"::1", "127.0.0.1", false},
    // IPv4-mapped IPv6, both ways
    {"192.0.2.0/24", "::ffff:192.0.2.9", true},   // mapped client, IPv4 list
    {"192.0.2.0/24", "::ffff:192.0.3.9", false},
    {"::ffff:192.0.2.0/120", "192.0.2.9", true},  // mapped network is IPv4
    {"::ffff:192.0.2.0/120", "192.0.3.9", false},
    {"::ffff:192.0.2.0/120", "::ffff:192.0.2.9", true},  // mapped both
    {"::ffff:10.0.0.0/104", "10.2.3.4", true},
    {"::ffff:192.0.2.7", "192.0.2.7", true},  // mapped host is a /32
    {"::ffff:0:0/96", "198.51.100.1", true},  // every mapped address = every IPv4 address
    {"::ffff:0:0/96", "2001:db8::1", false},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"2001:db8:1:2::/64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", true},
    {"2001:db8:1:2::/64", "2001:db8:1:3::1", false},
    {"2001:db8::1", "2001:db8::1", true},  // /128
    {"2001:db8::1", "2001:db8::2", false},
    {"2001:db8:1:20::/60", "2001:db8:1:2f::1", true},
    {"2001:db8:1:20::/60", "2001:db8:1:30::1", false},
    {"fe80::/10", "febf::1", true},
    {"fe80::/10", "fec0::1", false},
    // separators: commas and/or white space, repeated, leading and trailing
    {"192.0.2.1, 198.51.100.0/24  2001:db8::/48", "198.51.100.77", true},
    {"192.0.2.1,198.51.100.0/24,2001:db8::/48", "2001:db8:0:ffff::5", true},
    {"192.0.2.1,\t198.51.100.0/24\n2001:db8::/48", "203.0.113.1", false},
    {",,192.0.2.1,,\r\n 10.0.0.0/8 ,", "10.9.9.9", true},
};

BOOST_DATA_TEST_CASE(list_matches, bdata::make(matchCases), c) {
    NetworkList list = NetworkList::parse(c.spec);
    BOOST_TEST(list.contains(IPAddress(c.ip)) == c.match);
}

BOOST_AUTO_TEST_CASE(default_list_trusts_nobody) {
    NetworkList none;
    BOOST_TEST(none.empty());
    BOOST_TEST(!none.contains(IPAddress("127.0.0.1")));
    BOOST_TEST(!none.contains(IPAddress("::1")));
}

BOOST_AUTO_TEST_CASE(counts_and_canonical_form) {
    BOOST_TEST(NetworkList::parse("").size() == 0u);
    BOOST_TEST(NetworkList::parse(" , ").empty());
    BOOST_TEST(NetworkList::parse("192.0.2.1, 2001:db8::/32").size() == 2u);
    BOOST_TEST(NetworkList::parse("10.0.0.0/8,2001:DB8::/32 127.0.0.1 ::ffff:10.0.0.0/104").toString() ==
               "10.0.0.0/8, 2001:db8::/32, 127.0.0.1/32, 10.0.0.0/8");
    BOOST_TEST(NetworkList::parse("").toString() == "");
    // IPv4-compatible addresses print as inet_ntop does (IPAddress::toString says "::" for
    // "::8f"; found by fuzz_network_list).
    BOOST_TEST(Network::parse("::8f").toString() == "::8f/128");
    BOOST_TEST(Network::parse("::102:304").toString() == "::1.2.3.4/128");
}

// --- refused entries ------------------------------------------------------------------------

struct BadCase {
    std::string spec;
    std::string message;  // a part of the error text
};
std::ostream& operator<<(std::ostream& o, const BadCase& c) { return o << "'" << c.spec << "'"; }

const BadCase badCases[] = {
    // host bits below the prefix: refused, with the network the operator probably meant
    {"10.1.2.3/8", "bad network '10.1.2.3/8': address bits are set below the /8 prefix (did you mean 10.0.0.0/8?)"},
    {"192.0.2.7/24", "(did you mean 192.0.2.0/24?)"},
    {"192.0.2.1/0", "(did you mean 0.0.0.0/0?)"},
    {"2001:db8::1/64", "(did you mean 2001:db8::/64?)"},
    {"::ffff:10.1.0.0/104", "(did you mean 10.0.0.0/8?)"},  // said as the IPv4 network it is
    {"10.0.0.0/8, 10.1.2.3/8", "bad network '10.1.2.3/8'"},  // the bad entry, not the list
    // prefix length
    {"10.0.0.0/33", "bad network '10.0.0.0/33': the prefix length must be a number 0..32"},
    {"2001:db8::/129", "the prefix length must be a number 0..128"},
    {"10.0.0.0/", "prefix length"},
    {"10.0.0.0/8/8", "prefix length"},
    {"10.0.0.0/-1", "prefix length"},
    {"10.0.0.0/08", "prefix length"},  // no leading zeros
    {"10.0.0.0/0024", "prefix length"},
    {"10.0.0.0/2x", "prefix length"},
    {"10.0.0.0/ 8", "prefix length"},
    // addresses: strict, never inet_aton's forms
    {"/24", "'' is not an IPv4 or IPv6 address"},
    {"010.0.0.1", "'010.0.0.1' is not an IPv4 or IPv6 address"},
    {"10", "not an IPv4 or IPv6 address"},
    {"10.0.0", "not an IPv4 or IPv6 address"},
    {"192.0.2/24", "not an IPv4 or IPv6 address"},
    {"10.0.0.0.0", "not an IPv4 or IPv6 address"},
    {"10..0.1", "not an IPv4 or IPv6 address"},
    {"0x0a.0.0.1", "not an IPv4 or IPv6 address"},
    {"256.0.0.0", "not an IPv4 or IPv6 address"},
    {"1.2.3.4.", "not an IPv4 or IPv6 address"},
    {"fe80::1%eth0", "not an IPv4 or IPv6 address"},
    {"[2001:db8::1]", "not an IPv4 or IPv6 address"},
    {"2001:db8:::1", "not an IPv4 or IPv6 address"},
    {"1:2:3:4:5:6:7:8:9", "not an IPv4 or IPv6 address"},
    {"example.com", "not an IPv4 or IPv6 address"},
    {"10.0.0.1;11.0.0.1", "not an IPv4 or IPv6 address"},
    {"1.2.3.4,bad", "bad network 'bad'"},
};

BOOST_DATA_TEST_CASE(bad_entries_are_refused_with_a_clear_error, bdata::make(badCases), c) {
    const std::string error = errorOf([&] { NetworkList::parse(c.spec); });
    BOOST_TEST(error.find(c.message) != std::string::npos, "'" << error << "' should contain '" << c.message << "'");
}

// --- every prefix length ----------------------------------------------------------------------

// `bytes` with bit `bit` (0 = most significant) flipped.
template <std::size_t N>
std::array<unsigned char, N> flipped(std::array<unsigned char, N> bytes, unsigned bit) {
    bytes[bit / 8] ^= static_cast<unsigned char>(0x80 >> (bit % 8));
    return bytes;
}

// Checks one family at every prefix length 0..max: the network of `full` (all ones) masked
// to the prefix parses, prints and re-parses the same, contains its base and last address and
// no address differing in a bit inside the prefix; with a host bit set it is refused.
template <std::size_t N>
void checkEveryPrefix() {
    constexpr unsigned max = N * 8;
    std::array<unsigned char, N> ones{};
    ones.fill(0xB7);  // a pattern with both bit values in every byte
    for (unsigned p = 0; p <= max; ++p) {
        std::array<unsigned char, N> base = ones;
        for (unsigned bit = p; bit < max; ++bit)
            base[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
        std::array<unsigned char, N> last = base;
        for (unsigned bit = p; bit < max; ++bit)
            last[bit / 8] |= static_cast<unsigned char>(0x80 >> (bit % 8));
        const std::string text = IPAddress(base.data(), N).toString() + "/" + std::to_string(p);
        BOOST_TEST_CONTEXT(text) {
            Network n = Network::parse(text);
            BOOST_TEST(n.prefix() == p);
            BOOST_TEST(n.toString() == text);
            BOOST_TEST((Network::parse(n.toString()) == n));
            BOOST_TEST(n.contains(IPAddress(base.data(), N)));
            BOOST_TEST(n.contains(IPAddress(last.data(), N)));
            for (unsigned bit = 0; bit < p; ++bit)
                BOOST_TEST(!n.contains(IPAddress(flipped(base, bit).data(), N)), "bit " << bit);
            if (p < max) {
                const std::string withHostBit =
                    IPAddress(flipped(base, max - 1).data(), N).toString() + "/" + std::to_string(p);
                const std::string error = errorOf([&] { Network::parse(withHostBit); });
                BOOST_TEST(error.find("(did you mean " + text + "?)") != std::string::npos, error);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(every_ipv4_prefix_0_to_32) { checkEveryPrefix<4>(); }
BOOST_AUTO_TEST_CASE(every_ipv6_prefix_0_to_128) { checkEveryPrefix<16>(); }

BOOST_AUTO_TEST_CASE(mapped_networks_are_ipv4) {
    Network n = Network::parse("::ffff:192.0.2.0/120");
    BOOST_TEST(n.isIPv4());
    BOOST_TEST(n.toString() == "192.0.2.0/24");
    BOOST_TEST(Network::parse("::ffff:192.0.2.7").toString() == "192.0.2.7/32");
    BOOST_TEST(Network::parse("::ffff:0:0/96").toString() == "0.0.0.0/0");
    // Shorter than /96 it is an IPv6 network (it covers more than the mapped range).
    Network wide = Network::parse("::/80");
    BOOST_TEST(!wide.isIPv4());
    BOOST_TEST(!wide.contains(IPAddress("::ffff:192.0.2.7")));
}

// --- strict address text ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(strict_addresses) {
    BOOST_TEST(parseAddress("192.0.2.7")->toString() == "192.0.2.7");
    BOOST_TEST(parseAddress("0.0.0.0")->toString() == "0.0.0.0");
    BOOST_TEST(parseAddress("255.255.255.255")->toString() == "255.255.255.255");
    BOOST_TEST(parseAddress("2001:DB8::1")->toString() == "2001:db8::1");
    BOOST_TEST(parseAddress("::ffff:192.0.2.7")->family() == Poco::Net::AddressFamily::IPv6);
    for (const char* bad : {"", "1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.-4", " 1.2.3.4",
                            "1.2.3.4 ", "::1%lo", "fe80::1%1", "2001:db8::g", ":", "1.2.3.4/32"})
        BOOST_TEST(!parseAddress(bad).has_value(), "'" << bad << "'");
    BOOST_TEST(!parseIpv4("::1").has_value());
    BOOST_TEST(!parseIpv6("1.2.3.4").has_value());
}

BOOST_AUTO_TEST_CASE(unmapped_folds_only_mapped_addresses) {
    BOOST_TEST(unmapped(IPAddress("::ffff:192.0.2.7")).toString() == "192.0.2.7");
    BOOST_TEST(unmapped(IPAddress("::ffff:192.0.2.7")).family() == Poco::Net::AddressFamily::IPv4);
    BOOST_TEST(unmapped(IPAddress("::102:304")).family() == Poco::Net::AddressFamily::IPv6);  // IPv4-compatible: not mapped
    BOOST_TEST(unmapped(IPAddress("2001:db8::1")).toString() == "2001:db8::1");
    BOOST_TEST(unmapped(IPAddress("192.0.2.7")).toString() == "192.0.2.7");
}

// --- address keys ------------------------------------------------------------------------------

struct KeyCase {
    std::string ip;
    unsigned prefix;
    std::string key;
};
std::ostream& operator<<(std::ostream& o, const KeyCase& c) { return o << c.ip << " /" << c.prefix; }

// Produced by the two implementations this replaces (abuse::addressKey and
// grants::grantKeyText, which agreed on every row) before they were deleted. These keys are
// stored in the shared PostgreSQL tables: a change here orphans live grants and counters.
const KeyCase keyCases[] = {
    {"192.0.2.7", 0, "192.0.2.7"},
    {"192.0.2.7", 7, "192.0.2.7"},
    {"192.0.2.7", 48, "192.0.2.7"},
    {"192.0.2.7", 64, "192.0.2.7"},
    {"192.0.2.7", 65, "192.0.2.7"},
    {"192.0.2.7", 112, "192.0.2.7"},
    {"192.0.2.7", 127, "192.0.2.7"},
    {"192.0.2.7", 128, "192.0.2.7"},
    {"192.0.2.7", 200, "192.0.2.7"},
    {"0.0.0.0", 0, "0.0.0.0"},
    {"0.0.0.0", 7, "0.0.0.0"},
    {"0.0.0.0", 48, "0.0.0.0"},
    {"0.0.0.0", 64, "0.0.0.0"},
    {"0.0.0.0", 65, "0.0.0.0"},
    {"0.0.0.0", 112, "0.0.0.0"},
    {"0.0.0.0", 127, "0.0.0.0"},
    {"0.0.0.0", 128, "0.0.0.0"},
    {"0.0.0.0", 200, "0.0.0.0"},
    {"255.255.255.255", 0, "255.255.255.255"},
    {"255.255.255.255", 7, "255.255.255.255"},
    {"255.255.255.255", 48, "255.255.255.255"},
    {"255.255.255.255", 64, "255.255.255.255"},
    {"255.255.255.255", 65, "255.255.255.255"},
    {"255.255.255.255", 112, "255.255.255.255"},
    {"255.255.255.255", 127, "255.255.255.255"},
    {"255.255.255.255", 128, "255.255.255.255"},
    {"255.255.255.255", 200, "255.255.255.255"},
    {"127.0.0.1", 0, "127.0.0.1"},
    {"127.0.0.1", 7, "127.0.0.1"},
    {"127.0.0.1", 48, "127.0.0.1"},
    {"127.0.0.1", 64, "127.0.0.1"},
    {"127.0.0.1", 65, "127.0.0.1"},
    {"127.0.0.1", 112, "127.0.0.1"},
    {"127.0.0.1", 127, "127.0.0.1"},
    {"127.0.0.1", 128, "127.0.0.1"},
    {"127.0.0.1", 200, "127.0.0.1"},
    {"::ffff:192.0.2.7", 0, "192.0.2.7"},
    {"::ffff:192.0.2.7", 7, "192.0.2.7"},
    {"::ffff:192.0.2.7", 48, "192.0.2.7"},
    {"::ffff:192.0.2.7", 64, "192.0.2.7"},
    {"::ffff:192.0.2.7", 65, "192.0.2.7"},
    {"::ffff:192.0.2.7", 112, "192.0.2.7"},
    {"::ffff:192.0.2.7", 127, "192.0.2.7"},
    {"::ffff:192.0.2.7", 128, "192.0.2.7"},
    {"::ffff:192.0.2.7", 200, "192.0.2.7"},
    {"::ffff:0.0.0.0", 0, "0.0.0.0"},
    {"::ffff:0.0.0.0", 7, "0.0.0.0"},
    {"::ffff:0.0.0.0", 48, "0.0.0.0"},
    {"::ffff:0.0.0.0", 64, "0.0.0.0"},
    {"::ffff:0.0.0.0", 65, "0.0.0.0"},
    {"::ffff:0.0.0.0", 112, "0.0.0.0"},
    {"::ffff:0.0.0.0", 127, "0.0.0.0"},
    {"::ffff:0.0.0.0", 128, "0.0.0.0"},
    {"::ffff:0.0.0.0", 200, "0.0.0.0"},
    {"2001:db8:1:2:3:4:5:6", 0, "::/0"},
    {"2001:db8:1:2:3:4:5:6", 7, "2000::/7"},
    {"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
    {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
    {"2001:db8:1:2:3:4:5:6", 65, "2001:db8:1:2::/65"},
    {"2001:db8:1:2:3:4:5:6", 112, "2001:db8:1:2:3:4:5:0/112"},
    {"2001:db8:1:2:3:4:5:6", 127, "2001:db8:1:2:3:4:5:6/127"},
    {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
    {"2001:db8:1:2:3:4:5:6", 200, "2001:db8:1:2:3:4:5:6"},
    {"2001:db8::1", 0, "::/0"},
    {"2001:db8::1", 7, "2000::/7"},
    {"2001:db8::1", 48, "2001:db8::/48"},
    {"2001:db8::1", 64, "2001:db8::/64"},
    {"2001:db8::1", 65, "2001:db8::/65"},
    {"2001:db8::1", 112, "2001:db8::/112"},
    {"2001:db8::1", 127, "2001:db8::/127"},
    {"2001:db8::1", 128, "2001:db8::1"},
    {"2001:db8::1", 200, "2001:db8::1"},
    {"::1", 0, "::/0"},
    {"::1", 7, "::/7"},
    {"::1", 48, "::/48"},
    {"::1", 64, "::/64"},
    {"::1", 65, "::/65"},
    {"::1", 112, "::/112"},
    {"::1", 127, "::/127"},
    {"::1", 128, "::1"},
    {"::1", 200, "::1"},
    {"::", 0, "::/0"},
    {"::", 7, "::/7"},
    {"::", 48, "::/48"},
    {"::", 64, "::/64"},
    {"::", 65, "::/65"},
    {"::", 112, "::/112"},
    {"::", 127, "::/127"},
    {"::", 128, "::"},
    {"::", 200, "::"},
    {"fe80::1", 0, "::/0"},
    {"fe80::1", 7, "fe00::/7"},
    {"fe80::1", 48, "fe80::/48"},
    {"fe80::1", 64, "fe80::/64"},
    {"fe80::1", 65, "fe80::/65"},
    {"fe80::1", 112, "fe80::/112"},
    {"fe80::1", 127, "fe80::/127"},
    {"fe80::1", 128, "fe80::1"},
    {"fe80::1", 200, "fe80::1"},
    {"::102:304", 0, "::/0"},
    {"::102:304", 7, "::/7"},
    {"::102:304", 48, "::/48"},
    {"::102:304", 64, "::/64"},
    {"::102:304", 65, "::/65"},
    {"::102:304", 112, "::1.2.0.0/112"},
    {"::102:304", 127, "::1.2.3.4/127"},
    {"::102:304", 128, "::1.2.3.4"},
    {"::102:304", 200, "::1.2.3.4"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 0, "::/0"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 7, "2000::/7"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 48, "2001:db8:ffff::/48"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 64, "2001:db8:ffff:ffff::/64"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65, "2001:db8:ffff:ffff:8000::/65"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 112, "2001:db8:ffff:ffff:ffff:ffff:ffff:0/112"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 127, "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe/127"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 128, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 200, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, "::/0"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 7, "fe00::/7"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 48, "ffff:ffff:ffff::/48"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 64, "ffff:ffff:ffff:ffff::/64"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65, "ffff:ffff:ffff:ffff:8000::/65"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 112, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:0/112"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 127, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 128, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 200, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"64:ff9b::192.0.2.1", 0, "::/0"},
    {"64:ff9b::192.0.2.1", 7, "::/7"},
    {"64:ff9b::192.0.2.1", 48, "64:ff9b::/48"},
    {"64:ff9b::192.0.2.1", 64, "64:ff9b::/64"},
    {"64:ff9b::192.0.2.1", 65, "64:ff9b::/65"},
    {"64:ff9b::192.0.2.1", 112, "64:ff9b::c000:0/112"},
    {"64:ff9b::192.0.2.1", 127, "64:ff9b::c000:200/127"},
    {"64:ff9b::192.0.2.1", 128, "64:ff9b::c000:201"},
    {"64:ff9b::192.0.2.1", 200, "64:ff9b::c000:201"},
    {"2001:db8:0:0:1::1", 0, "::/0"},
    {"2001:db8:0:0:1::1", 7, "2000::/7"},
    {"2001:db8:0:0:1::1", 48, "2001:db8::/48"},
    {"2001:db8:0:0:1::1", 64, "2001:db8::/64"},
    {"2001:db8:0:0:1::1", 65, "2001:db8::/65"},
    {"2001:db8:0:0:1::1", 112, "2001:db8::1:0:0:0/112"},
    {"2001:db8:0:0:1::1", 127, "2001:db8::1:0:0:0/127"},
    {"2001:db8:0:0:1::1", 128, "2001:db8::1:0:0:1"},
    {"2001:db8:0:0:1::1", 200, "2001:db8::1:0:0:1"},
    {"::ffff:1:2", 0, "0.1.0.2"},
    {"::ffff:1:2", 7, "0.1.0.2"},
    {"::ffff:1:2", 48, "0.1.0.2"},
    {"::ffff:1:2", 64, "0.1.0.2"},
    {"::ffff:1:2", 65, "0.1.0.2"},
    {"::ffff:1:2", 112, "0.1.0.2"},
    {"::ffff:1:2", 127, "0.1.0.2"},
    {"::ffff:1:2", 128, "0.1.0.2"},
    {"::ffff:1:2", 200, "0.1.0.2"},
};

BOOST_DATA_TEST_CASE(address_keys_are_byte_identical_to_the_stored_ones, bdata::make(keyCases), c) {
    BOOST_TEST(addressKey(IPAddress(c.ip), c.prefix) == c.key);
}

BOOST_AUTO_TEST_CASE(address_key_ignores_the_scope_id) {
    const IPAddress plain("fe80::1");
    const IPAddress scoped(plain.addr(), plain.length(), 2);
    BOOST_TEST(scoped.scope() == 2u);
    BOOST_TEST(addressKey(scoped, 128) == "fe80::1");
    BOOST_TEST(addressKey(scoped, 64) == "fe80::/64");
}

struct ParseKeyCase {
    std::string text;
    unsigned prefix;
    std::string key;  // "" = refused
};
std::ostream& operator<<(std::ostream& o, const ParseKeyCase& c) { return o << c.text << " /" << c.prefix; }

const ParseKeyCase parseKeyCases[] = {
    {"192.0.2.7", 64, "192.0.2.7"},
    {"::ffff:192.0.2.7", 64, "192.0.2.7"},
    {"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},  // an address: keyed like a login from it
    {"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
    {"2001:db8:1:2::/64", 128, "2001:db8:1:2::/64"},  // a canonical key: as is
    {"2001:db8::/48", 64, "2001:db8::/48"},
    {"2001:DB8:1:2::/64", 64, ""},     // not the canonical spelling
    {"2001:db8:1:2::1/64", 64, ""},    // host bits
    {"2001:db8::1/128", 64, ""},       // a /128 key has no suffix
    {"2001:db8::/064", 64, ""},
    {"2001:db8::/129", 64, ""},
    {"192.0.2.0/24", 64, ""},          // IPv4 keys are exact addresses
    {"::ffff:192.0.2.0/120", 64, ""},
    {"10", 64, ""},                    // strict: no inet_aton forms
    {"010.0.0.1", 64, ""},
    {"", 64, ""},
    {"example.com", 64, ""},
};

BOOST_DATA_TEST_CASE(operator_typed_keys, bdata::make(parseKeyCases), c) {
    auto key = parseAddressKey(c.text, c.prefix);
    BOOST_TEST(key.value_or("") == c.key);
}

}  // namespace
