// PROXY protocol v1/v2 (HAProxy proxy-protocol.txt): the parser against the cases of the
// specification, every prefix of every valid header (NeedMore, never Error, never asking
// beyond the header), the reader on real loopback sockets (no byte after the header is
// taken), and the trusted-network list.
#include "net/ProxyProtocol.h"

#include "net/LineChannel.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

using namespace postern::net;
namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

namespace {

// --- builders for v2 headers ------------------------------------------------------------

const std::string Sig("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

std::string be16(std::size_t v) { return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)}; }

std::string bytes(std::initializer_list<int> list) {
    std::string s;
    for (int b : list) s += static_cast<char>(b);
    return s;
}

// Signature, ver/cmd, fam/proto, length of body, body.
std::string v2(int verCmd, int famProto, const std::string& body) {
    return Sig + bytes({verCmd, famProto}) + be16(body.size()) + body;
}

std::string tlv(int type, const std::string& value) { return bytes({type}) + be16(value.size()) + value; }

// 192.0.2.1:4321 -> 198.51.100.2:25
const std::string Inet4Block = bytes({192, 0, 2, 1, 198, 51, 100, 2, 0x10, 0xE1, 0x00, 0x19});
// 2001:db8::1:4321 -> 2001:db8::2:587
const std::string Inet6Block =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,  //
           0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,  //
           0x10, 0xE1, 0x02, 0x4B});

// AWS Network Load Balancer header with a CRC32C, a custom VPC endpoint TLV (0xEA) and
// NOOP padding (aws/elastic-load-balancing-tools, Compatibility_AwsNetworkLoadBalancerTest).
const std::string AwsNlb = bytes({
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x54,
    0xac, 0x1f, 0x07, 0x71, 0xac, 0x1f, 0x0a, 0x1f, 0xc8, 0xf2, 0x00, 0x50, 0x03, 0x00, 0x04, 0xe8,
    0xd6, 0x89, 0x2d, 0xea, 0x00, 0x17, 0x01, 0x76, 0x70, 0x63, 0x65, 0x2d, 0x30, 0x38, 0x64, 0x32,
    0x62, 0x66, 0x31, 0x35, 0x66, 0x61, 0x63, 0x35, 0x30, 0x30, 0x31, 0x63, 0x39, 0x04, 0x00, 0x24,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
});
std::string awsNlbBadCrc() {
    std::string s = AwsNlb;
    s[20] = static_cast<char>(0x20);  // destination address changed after the checksum
    return s;
}

// HAProxy with a client certificate: SSL TLV, flags SSL|CERT_CONN|CERT_SESS, verify 0,
// sub-TLVs VERSION "TLSv1.3" and CN (as in pires/go-proxyproto's tlv tests).
const std::string HaproxySslCn = bytes({
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x40,
    0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xcc, 0x8a, 0x23, 0x2e, 0x20, 0x00, 0x31, 0x07,
    0x00, 0x00, 0x00, 0x00, 0x21, 0x00, 0x07, 0x54, 0x4c, 0x53, 0x76, 0x31, 0x2e, 0x33, 0x22, 0x00,
    0x1f, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x20, 0x43, 0x6f, 0x6d, 0x6d, 0x6f, 0x6e, 0x20,
    0x4e, 0x61, 0x6d, 0x65, 0x20, 0x43, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x20, 0x43, 0x65, 0x72, 0x74,
});

const std::string Ffff6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

// --- the table ----------------------------------------------------------------------------

enum class Want { Ok, Error, NeedMore };

struct Case {
    std::string name;
    std::string input;
    Want want;
    std::size_t size = 0;  // Ok: consumed; NeedMore: atLeast
    bool local = true;     // Ok only
    std::string source;    // Ok and !local: SocketAddress::toString()
    std::string destination;
};
std::ostream& operator<<(std::ostream& o, const Case& c) { return o << c.name; }

Case ok(std::string name, std::string input, std::size_t consumed, std::string src, std::string dst) {
    return {std::move(name), std::move(input), Want::Ok, consumed, false, std::move(src), std::move(dst)};
}
Case okLocal(std::string name, std::string input, std::size_t consumed) {
    return {std::move(name), std::move(input), Want::Ok, consumed, true, {}, {}};
}
Case error(std::string name, std::string input) { return {std::move(name), std::move(input), Want::Error, 0, true, {}, {}}; }
Case needMore(std::string name, std::string input, std::size_t atLeast) {
    return {std::move(name), std::move(input), Want::NeedMore, atLeast, true, {}, {}};
}

const std::string V1Tcp4 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
const std::string V1Tcp6Max = "PROXY TCP6 " + Ffff6 + " " + Ffff6 + " 65535 65535\r\n";  // 104 bytes
const std::string V1UnknownMax = "PROXY UNKNOWN " + Ffff6 + " " + Ffff6 + " 65535 65535\r\n";  // 107 bytes

std::vector<Case> cases() {
    return {
        // ---- v1 (2.1) -------------------------------------------------------------------
        ok("v1 TCP4 spec example", V1Tcp4, V1Tcp4.size(), "192.168.0.1:56324", "192.168.0.11:443"),
        ok("v1 TCP4 followed by SMTP", V1Tcp4 + "EHLO x\r\n", V1Tcp4.size(), "192.168.0.1:56324", "192.168.0.11:443"),
        ok("v1 TCP4 max length 56", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56,
           "255.255.255.255:65535", "255.255.255.255:65535"),
        ok("v1 TCP4 zeros", "PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n", 33, "0.0.0.0:0", "10.0.0.1:0"),
        ok("v1 TCP6 short form", "PROXY TCP6 2001:db8::1 2001:db8::2 4321 587\r\n", 45, "[2001:db8::1]:4321",
           "[2001:db8::2]:587"),
        ok("v1 TCP6 max length 104", V1Tcp6Max, 104, "[" + Ffff6 + "]:65535", "[" + Ffff6 + "]:65535"),
        ok("v1 TCP6 upper-case hex", "PROXY TCP6 2001:DB8::A ::1 1 2\r\n", 32, "[2001:db8::a]:1", "[::1]:2"),
        ok("v1 TCP6 IPv4-mapped (inet_ntop form)", "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n", 37, "[::ffff:192.0.2.1]:1",
           "[::1]:2"),
        okLocal("v1 UNKNOWN short form", "PROXY UNKNOWN\r\n", 15),
        okLocal("v1 UNKNOWN max length 107", V1UnknownMax, 107),
        okLocal("v1 UNKNOWN ignores the rest", "PROXY UNKNOWN what  ever\r\n", 26),
        error("v1 UNKNOWN 108 bytes", "PROXY UNKNOWN " + Ffff6 + " " + Ffff6 + " 65535 655355\r\n"),
        error("v1 no CRLF within 107 bytes", "PROXY UNKNOWN " + std::string(100, 'x')),
        error("v1 LF only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        error("v1 CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
        error("v1 lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 PROXY without space", "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 PROXY alone", "PROXY\r\n"),
        error("v1 unknown protocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 UDP4 not in v1", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n"),
        error("v1 TCP4 without addresses", "PROXY TCP4\r\n"),
        error("v1 two spaces", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
        error("v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        error("v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
        error("v1 heading zero in address", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 octet above 255", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),
        error("v1 three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
        error("v1 five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n"),
        error("v1 empty octet", "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n"),
        error("v1 hex octet", "PROXY TCP4 0x1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 heading zero in port", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"),
        error("v1 port above 65535", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
        error("v1 signed port", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
        error("v1 TCP4 with IPv6 addresses", "PROXY TCP4 ::1 ::1 1 2\r\n"),
        error("v1 TCP6 with IPv4 addresses", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
        error("v1 TCP6 two double colons", "PROXY TCP6 1::2::3 ::1 1 2\r\n"),
        error("v1 TCP6 zone id", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
        error("v1 TCP6 nine groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"),
        // Early rejection: wrong before the line is complete.
        error("v1 early bad protocol", "PROXY XX"),
        error("v1 early bad address", "PROXY TCP4 1.2.3.999 "),
        error("v1 early LF", "PROXY TCP4\n"),
        needMore("v1 partial asks for the minimum", "PROXY", 15),
        needMore("v1 partial after minimum", "PROXY TCP4 1.2.3.4 ", 20),
        needMore("v1 partial ending in CR", "PROXY UNKNOWN\r", 15),
        needMore("empty input", "", 15),

        // ---- not PROXY at all (2.2: "the connection must be dropped") --------------------
        error("SMTP command", "EHLO client.example\r\n"),
        error("HTTP request", "GET / HTTP/1.1\r\n"),
        error("TLS ClientHello", bytes({0x16, 0x03, 0x01, 0x00, 0xA5})),

        // ---- v2 (2.2) -------------------------------------------------------------------
        ok("v2 PROXY TCP4", v2(0x21, 0x11, Inet4Block), 28, "192.0.2.1:4321", "198.51.100.2:25"),
        ok("v2 PROXY TCP4 followed by TLS", v2(0x21, 0x11, Inet4Block) + bytes({0x16, 0x03, 0x01}), 28, "192.0.2.1:4321",
           "198.51.100.2:25"),
        ok("v2 PROXY TCP6", v2(0x21, 0x21, Inet6Block), 52, "[2001:db8::1]:4321", "[2001:db8::2]:587"),
        ok("v2 TCP4 with TLVs", v2(0x21, 0x11, Inet4Block + tlv(0x01, "smtp") + tlv(0x02, "mx.example")), 28 + 7 + 13,
           "192.0.2.1:4321", "198.51.100.2:25"),
        ok("v2 unknown, NOOP, NETNS and custom TLVs skipped",
           v2(0x21, 0x11, Inet4Block + tlv(0x04, "") + tlv(0x30, "blue") + tlv(0xE0, "x") + tlv(0xF8, "yy")),
           28 + 3 + 7 + 4 + 5, "192.0.2.1:4321", "198.51.100.2:25"),
        ok("v2 TLV with zero length at the end", v2(0x21, 0x11, Inet4Block + tlv(0xEA, "")), 31, "192.0.2.1:4321",
           "198.51.100.2:25"),
        ok("v2 AWS NLB with CRC32C", AwsNlb, AwsNlb.size(), "172.31.7.113:51442", "172.31.10.31:80"),
        ok("v2 HAProxy SSL with CN", HaproxySslCn, HaproxySslCn.size(), "127.0.0.1:52362", "127.0.0.1:9006"),
        ok("v2 UNIQUE_ID of 128 bytes", v2(0x21, 0x11, Inet4Block + tlv(0x05, std::string(128, 'u'))), 28 + 131,
           "192.0.2.1:4321", "198.51.100.2:25"),
        okLocal("v2 LOCAL UNSPEC (health check)", v2(0x20, 0x00, ""), 16),
        okLocal("v2 LOCAL with an address block skipped", v2(0x20, 0x11, Inet4Block), 28),
        okLocal("v2 LOCAL with garbage block ignored", v2(0x20, 0x00, "xyz"), 19),
        okLocal("v2 PROXY UNSPEC", v2(0x21, 0x00, ""), 16),
        okLocal("v2 PROXY UNSPEC with TLVs", v2(0x21, 0x00, tlv(0x02, "a")), 20),
        okLocal("v2 PROXY INET with UNSPEC protocol", v2(0x21, 0x10, Inet4Block), 28),
        okLocal("v2 UDP over IPv4 falls back to local", v2(0x21, 0x12, Inet4Block), 28),
        okLocal("v2 UDP over IPv6 falls back to local", v2(0x21, 0x22, Inet6Block), 52),
        okLocal("v2 UNIX stream falls back to local", v2(0x21, 0x31, std::string(216, 'p')), 232),
        okLocal("v2 UNIX datagram falls back to local", v2(0x21, 0x32, std::string(216, 'p')), 232),
        okLocal("v2 at the length cap", v2(0x21, 0x00, tlv(0x04, std::string(1021, '\0'))), 16 + 1024),
        error("v2 wrong signature", "\r\n\r\n\x01\r\nQUIT\n" + bytes({0x21, 0x11}) + be16(12) + Inet4Block),
        error("v2 wrong signature early", "\r\n\r\nX"),
        error("v2 version 1", v2(0x11, 0x11, Inet4Block)),
        error("v2 version 3", v2(0x31, 0x11, Inet4Block)),
        error("v2 command 2", v2(0x22, 0x11, Inet4Block)),
        error("v2 command 15", v2(0x2F, 0x11, Inet4Block)),
        error("v2 family 4", v2(0x21, 0x41, Inet4Block)),
        error("v2 protocol 3", v2(0x21, 0x13, Inet4Block)),
        error("v2 LOCAL with bad family", v2(0x20, 0x50, "")),
        error("v2 bad command before the length arrives", Sig + bytes({0x23})),
        error("v2 length above the cap, fixed part only", Sig + bytes({0x21, 0x11}) + be16(1025)),
        error("v2 length 65535", Sig + bytes({0x21, 0x11}) + be16(65535)),
        error("v2 TCP4 address block short", v2(0x21, 0x11, Inet4Block.substr(0, 8))),
        error("v2 TCP6 address block short", v2(0x21, 0x21, Inet4Block)),
        error("v2 UNIX address block short", v2(0x21, 0x31, std::string(100, 'p'))),
        error("v2 TLV overruns the header", v2(0x21, 0x11, Inet4Block + bytes({0x02, 0x00, 0x09}) + "abc")),
        error("v2 one stray byte", v2(0x21, 0x11, Inet4Block + bytes({0xE1}))),
        error("v2 two stray bytes", v2(0x21, 0x11, Inet4Block + bytes({0xE2, 0x00}))),
        error("v2 duplicate AUTHORITY", v2(0x21, 0x11, Inet4Block + tlv(0x02, "a") + tlv(0x02, "b"))),
        error("v2 duplicate SSL", v2(0x21, 0x11, Inet4Block + tlv(0x20, bytes({1, 0, 0, 0, 0})) + tlv(0x20, bytes({1, 0, 0, 0, 0})))),
        error("v2 SSL TLV shorter than 5", v2(0x21, 0x11, Inet4Block + tlv(0x20, bytes({1, 0, 0, 0})))),
        error("v2 SSL sub-TLV overrun", v2(0x21, 0x11, Inet4Block + tlv(0x20, bytes({1, 0, 0, 0, 0, 0x21, 0x00, 0x10}) + "TLSv1.3"))),
        error("v2 SSL duplicate sub-TLV", v2(0x21, 0x11, Inet4Block + tlv(0x20, bytes({1, 0, 0, 0, 0}) + tlv(0x23, "A") + tlv(0x23, "B")))),
        error("v2 CRC32C mismatch", awsNlbBadCrc()),
        error("v2 CRC32C of 3 bytes", v2(0x21, 0x11, Inet4Block + tlv(0x03, "abc"))),
        error("v2 UNIQUE_ID of 129 bytes", v2(0x21, 0x11, Inet4Block + tlv(0x05, std::string(129, 'u')))),
        needMore("v2 fixed part incomplete", Sig.substr(0, 5), 16),
        needMore("v2 waits for the whole block", v2(0x21, 0x11, Inet4Block).substr(0, 20), 28),
    };
}

void checkCase(const Case& c, const ProxyParseResult& r) {
    switch (c.want) {
        case Want::Error: {
            const auto* e = std::get_if<ProxyError>(&r);
            BOOST_TEST_REQUIRE(e != nullptr, "expected Error");
            BOOST_TEST(!e->reason.empty());
            break;
        }
        case Want::NeedMore: {
            const auto* n = std::get_if<ProxyNeedMore>(&r);
            BOOST_TEST_REQUIRE(n != nullptr, "expected NeedMore");
            BOOST_TEST(n->atLeast == c.size);
            break;
        }
        case Want::Ok: {
            if (const auto* e = std::get_if<ProxyError>(&r)) BOOST_TEST_MESSAGE("error: " << e->reason);
            const auto* p = std::get_if<ProxyParsed>(&r);
            BOOST_TEST_REQUIRE(p != nullptr, "expected Parsed");
            BOOST_TEST(p->consumed == c.size);
            BOOST_TEST(p->header.local == c.local);
            if (!c.local) {
                BOOST_TEST(p->header.source.toString() == c.source);
                BOOST_TEST(p->header.destination.toString() == c.destination);
            }
            break;
        }
    }
}

std::vector<Case> validCases() {
    std::vector<Case> out;
    for (auto& c : cases())
        if (c.want == Want::Ok) out.push_back(c);
    return out;
}

ProxyParsed parsed(const ProxyParseResult& r) {
    const auto* p = std::get_if<ProxyParsed>(&r);
    if (!p) throw std::runtime_error(std::holds_alternative<ProxyError>(r) ? std::get<ProxyError>(r).reason : "need more");
    return *p;
}

ProxyParseResult parse(const std::string& s) { return parseProxyHeader(s.data(), s.size()); }

}  // namespace

BOOST_AUTO_TEST_SUITE(proxy_protocol)

BOOST_DATA_TEST_CASE(parsesEverySpecCase, bdata::make(cases()), c) { checkCase(c, parse(c.input)); }

// 2 (receivers "may be tolerant to partial headers"; we are): every strict prefix of a
// valid header is NeedMore, and reading the bytes it asks for never passes the header end.
BOOST_DATA_TEST_CASE(everyPrefixOfAValidHeaderNeedsMore, bdata::make(validCases()), c) {
    for (std::size_t k = 0; k < c.size; ++k) {
        ProxyParseResult r = parseProxyHeader(c.input.data(), k);
        const auto* n = std::get_if<ProxyNeedMore>(&r);
        BOOST_TEST_REQUIRE(n != nullptr, "prefix of " << k << " bytes is not NeedMore");
        BOOST_TEST(n->atLeast > k);
        BOOST_TEST(n->atLeast <= c.size, "prefix " << k << " asks for " << n->atLeast);
    }
}

// Reading exactly what NeedMore asks, as a byte-counting reader would, lands on the header.
BOOST_DATA_TEST_CASE(byteCountedReadingEndsExactlyAtTheHeader, bdata::make(validCases()), c) {
    std::size_t have = 0;
    for (int guard = 0; guard < 200; ++guard) {
        ProxyParseResult r = parseProxyHeader(c.input.data(), have);
        if (const auto* p = std::get_if<ProxyParsed>(&r)) {
            BOOST_TEST(p->consumed == c.size);
            BOOST_TEST(have == c.size);
            return;
        }
        const auto* n = std::get_if<ProxyNeedMore>(&r);
        BOOST_TEST_REQUIRE(n != nullptr);
        have = n->atLeast;
        BOOST_TEST_REQUIRE(have <= c.size);
    }
    BOOST_FAIL("did not converge");
}

BOOST_AUTO_TEST_CASE(v1FieldsAreReported) {
    const auto p = parsed(parse(V1Tcp4));
    BOOST_TEST((p.header.version == ProxyVersion::V1));
    BOOST_TEST((p.header.command == ProxyCommand::Proxy));
    BOOST_TEST((p.header.family == ProxyFamily::Inet));
    BOOST_TEST((p.header.transport == ProxyTransport::Stream));
    const auto u = parsed(parse("PROXY UNKNOWN\r\n"));
    BOOST_TEST((u.header.family == ProxyFamily::Unspec));
    BOOST_TEST(u.header.local);
}

BOOST_AUTO_TEST_CASE(v2TlvsAreReported) {
    const auto p = parsed(parse(v2(0x21, 0x21, Inet6Block + tlv(0x01, "smtp") + tlv(0x02, "mx.example") +
                                                   tlv(0x05, "id-1") + tlv(0xE0, "custom"))));
    BOOST_TEST((p.header.version == ProxyVersion::V2));
    BOOST_TEST((p.header.family == ProxyFamily::Inet6));
    BOOST_TEST(p.header.alpn == "smtp");
    BOOST_TEST(p.header.authority == "mx.example");
    BOOST_TEST(p.header.uniqueId == "id-1");
    BOOST_TEST(!p.header.ssl.has_value());
    BOOST_TEST(!p.header.checksumVerified);
}

BOOST_AUTO_TEST_CASE(v2SslTlvWithSubTlvs) {
    const std::string ssl = bytes({0x01, 0x00, 0x00, 0x00, 0x01}) + tlv(0x21, "TLSv1.2") +
                            tlv(0x23, "ECDHE-RSA-AES128-GCM-SHA256") + tlv(0x24, "RSA-SHA256") + tlv(0x25, "RSA2048") +
                            tlv(0x7F, "unknown sub-TLV");
    const auto p = parsed(parse(v2(0x21, 0x11, Inet4Block + tlv(0x20, ssl))));
    BOOST_TEST_REQUIRE(p.header.ssl.has_value());
    const auto& s = *p.header.ssl;
    BOOST_TEST(s.isTls());
    BOOST_TEST(s.verify == 1u);
    BOOST_TEST(!s.hasVerifiedClientCert());
    BOOST_TEST(s.version == "TLSv1.2");
    BOOST_TEST(s.cipher == "ECDHE-RSA-AES128-GCM-SHA256");
    BOOST_TEST(s.sigAlg == "RSA-SHA256");
    BOOST_TEST(s.keyAlg == "RSA2048");
    BOOST_TEST(s.commonName.empty());

    const auto h = parsed(parse(HaproxySslCn));
    BOOST_TEST_REQUIRE(h.header.ssl.has_value());
    BOOST_TEST(h.header.ssl->client == 0x07);
    BOOST_TEST(h.header.ssl->hasVerifiedClientCert());
    BOOST_TEST(h.header.ssl->version == "TLSv1.3");
    BOOST_TEST(h.header.ssl->commonName == "Example Common Name Client Cert");
}

BOOST_AUTO_TEST_CASE(v2ChecksumIsVerifiedWhenPresent) {
    BOOST_TEST(parsed(parse(AwsNlb)).header.checksumVerified);
}

BOOST_AUTO_TEST_CASE(v2LocalIgnoresTheBlock) {
    // LOCAL: "discard the protocol block"; even a malformed TLV area is not looked at.
    const auto p = parsed(parse(v2(0x20, 0x11, Inet4Block + bytes({0x02, 0xFF, 0xFF}))));
    BOOST_TEST(p.header.local);
    BOOST_TEST((p.header.command == ProxyCommand::Local));
    BOOST_TEST(p.header.authority.empty());
}

BOOST_AUTO_TEST_CASE(v2CapIsConfigurable) {
    const std::string h = v2(0x21, 0x11, Inet4Block + tlv(0xE0, std::string(100, 'x')));
    BOOST_TEST(std::holds_alternative<ProxyError>(parseProxyHeader(h.data(), h.size(), 64)));
    BOOST_TEST(std::holds_alternative<ProxyError>(parseProxyHeader(h.data(), 16, 64)));
    BOOST_TEST(std::holds_alternative<ProxyParsed>(parseProxyHeader(h.data(), h.size(), 200)));
}

BOOST_AUTO_TEST_SUITE_END()

// --- the reader on real sockets ------------------------------------------------------------

namespace {

struct SocketPair {
    Poco::Net::ServerSocket listener{Poco::Net::SocketAddress("127.0.0.1", 0)};
    Poco::Net::StreamSocket client;
    Poco::Net::StreamSocket server;

    SocketPair() {
        client.connect(listener.address());
        server = listener.acceptConnection();
    }
    void send(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) off += static_cast<std::size_t>(client.sendBytes(s.data() + off, static_cast<int>(s.size() - off)));
    }
    // Reads until `n` bytes arrived or the peer closed.
    std::string receive(std::size_t n) {
        std::string out;
        server.setReceiveTimeout(Poco::Timespan(2, 0));
        char buf[256];
        while (out.size() < n) {
            int got = server.receiveBytes(buf, static_cast<int>(std::min(sizeof buf, n - out.size())));
            if (got <= 0) break;
            out.append(buf, static_cast<std::size_t>(got));
        }
        return out;
    }
};

struct ReaderCase {
    std::string name;
    std::string header;
};
std::ostream& operator<<(std::ostream& o, const ReaderCase& c) { return o << c.name; }

const ReaderCase readerCases[] = {
    {"v1 TCP4", V1Tcp4},
    {"v1 UNKNOWN", "PROXY UNKNOWN\r\n"},
    {"v2 TCP4", v2(0x21, 0x11, Inet4Block)},
    {"v2 TCP6 with TLVs", v2(0x21, 0x21, Inet6Block + tlv(0x02, "mx.example"))},
    {"v2 LOCAL", v2(0x20, 0x00, "")},
    {"v2 AWS NLB", AwsNlb},
};

// What follows the header: a TLS ClientHello start (implicit TLS) and a pipelined command.
const std::string After = bytes({0x16, 0x03, 0x01, 0x00, 0x05}) + "EHLO x\r\n";

}  // namespace

BOOST_AUTO_TEST_SUITE(proxy_header_reader)

BOOST_DATA_TEST_CASE(socketReaderLeavesWhatFollows, bdata::make(readerCases), c) {
    SocketPair s;
    s.send(c.header + After);
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 2000ms);
    BOOST_TEST_REQUIRE((r.status == ProxyReadStatus::Ok), r.error);
    BOOST_TEST(s.receive(After.size()) == After);
}

BOOST_DATA_TEST_CASE(socketReaderAcrossFragments, bdata::make(readerCases), c) {
    SocketPair s;
    std::thread writer([&] {
        // One byte at a time, then the rest: the header arrives in many segments.
        for (std::size_t i = 0; i < c.header.size(); i += 7) {
            s.send(c.header.substr(i, 7));
            std::this_thread::sleep_for(2ms);
        }
        s.send(After);
    });
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 5000ms);
    writer.join();
    BOOST_TEST_REQUIRE((r.status == ProxyReadStatus::Ok), r.error);
    BOOST_TEST(s.receive(After.size()) == After);
}

BOOST_DATA_TEST_CASE(lineChannelReaderKeepsTheRestBuffered, bdata::make(readerCases), c) {
    SocketPair s;
    s.send(c.header + "EHLO x\r\nQUIT\r\n");
    LineChannel ch(s.server, 2000ms);
    BOOST_TEST_REQUIRE((ch.fill(2000ms) == ReadStatus::Ok));  // the channel may hold it all already
    ProxyReadResult r = ProxyHeaderReader().read(ch, 2000ms);
    BOOST_TEST_REQUIRE((r.status == ProxyReadStatus::Ok), r.error);
    std::string line;
    BOOST_TEST_REQUIRE((ch.readLine(line, 512, 2000ms) == ReadStatus::Ok));
    BOOST_TEST(line == "EHLO x");
    BOOST_TEST_REQUIRE((ch.readLine(line, 512, 2000ms) == ReadStatus::Ok));
    BOOST_TEST(line == "QUIT");
}

BOOST_AUTO_TEST_CASE(lineChannelReaderWithAPartialBuffer) {
    SocketPair s;
    const std::string h = v2(0x21, 0x11, Inet4Block);
    s.send(h.substr(0, 10));
    LineChannel ch(s.server, 2000ms);
    BOOST_TEST_REQUIRE((ch.fill(2000ms) == ReadStatus::Ok));
    std::thread writer([&] {
        std::this_thread::sleep_for(20ms);
        s.send(h.substr(10) + After);
    });
    ProxyReadResult r = ProxyHeaderReader().read(ch, 2000ms);
    writer.join();
    BOOST_TEST_REQUIRE((r.status == ProxyReadStatus::Ok), r.error);
    BOOST_TEST(r.header.source.toString() == "192.0.2.1:4321");
    BOOST_TEST(ch.available() == 0u);
    BOOST_TEST(s.receive(After.size()) == After);  // still in the kernel, untouched
}

BOOST_AUTO_TEST_CASE(socketReaderReportsTheSource) {
    SocketPair s;
    s.send(V1Tcp4);
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 2000ms);
    BOOST_TEST_REQUIRE((r.status == ProxyReadStatus::Ok));
    BOOST_TEST(!r.header.local);
    BOOST_TEST(r.header.source.toString() == "192.168.0.1:56324");
}

BOOST_AUTO_TEST_CASE(socketReaderInvalid) {
    SocketPair s;
    s.send("EHLO spoofer\r\n");
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 2000ms);
    BOOST_TEST((r.status == ProxyReadStatus::Invalid));
    BOOST_TEST(!r.error.empty());
}

BOOST_AUTO_TEST_CASE(socketReaderTimesOutOnAPartialHeader) {
    SocketPair s;
    s.send("PROXY TCP4 1.2.3.4");
    const auto start = std::chrono::steady_clock::now();
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 200ms);
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST((r.status == ProxyReadStatus::Timeout));
    BOOST_TEST((took >= 150ms && took < 2000ms));
}

BOOST_AUTO_TEST_CASE(socketReaderClosedOnAPartialHeader) {
    SocketPair s;
    s.send(Sig.substr(0, 8));
    s.client.shutdownSend();
    ProxyReadResult r = ProxyHeaderReader().read(s.server, 2000ms);
    BOOST_TEST((r.status == ProxyReadStatus::Closed));
}

BOOST_AUTO_TEST_SUITE_END()
