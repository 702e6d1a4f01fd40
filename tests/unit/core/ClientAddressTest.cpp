// The session's client address: from a socket address, shown for logs and Received.
#include "core/ClientAddress.h"

#include <boost/test/unit_test.hpp>

using postern::core::ClientAddress;
using Poco::Net::SocketAddress;

BOOST_AUTO_TEST_SUITE(client_address)

BOOST_AUTO_TEST_CASE(ipv4_and_port) {
    auto c = ClientAddress::fromSocket(SocketAddress("192.0.2.7", 40000));
    BOOST_TEST(c.host() == "192.0.2.7");
    BOOST_TEST(c.port == 40000);
}

BOOST_AUTO_TEST_CASE(ipv6_shown_compressed) {
    auto c = ClientAddress::fromSocket(SocketAddress("[2001:db8::1]:25"));
    BOOST_TEST(c.host() == "2001:db8::1");
    BOOST_TEST(c.port == 25);
}

BOOST_AUTO_TEST_CASE(ipv4_mapped_ipv6_shown_as_ipv4) {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; logs and policy use a.b.c.d.
    auto c = ClientAddress::fromSocket(SocketAddress("[::ffff:192.0.2.9]:1234"));
    BOOST_TEST(c.host() == "192.0.2.9");
}

BOOST_AUTO_TEST_SUITE_END()
