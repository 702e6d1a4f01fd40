// The one address a session is about: from the socket or, on trusted listeners,
// from the PROXY header. Grants, policy, limits, logs and Received all use it.
#pragma once

#include <Poco/Net/IPAddress.h>
#include <Poco/Net/SocketAddress.h>

#include <cstdint>
#include <string>

namespace postern::core {

struct ClientAddress {
    Poco::Net::IPAddress ip;
    std::uint16_t port = 0;

    static ClientAddress fromSocket(const Poco::Net::SocketAddress& sa);
    // "192.0.2.7" or "2001:db8::1" (IPv4-mapped IPv6 shown as IPv4).
    std::string host() const;
};

}  // namespace postern::core
