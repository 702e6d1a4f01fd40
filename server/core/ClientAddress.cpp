#include "core/ClientAddress.h"

namespace postern::core {

ClientAddress ClientAddress::fromSocket(const Poco::Net::SocketAddress& sa) {
    ClientAddress c;
    c.ip = sa.host();
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; keep one spelling
    // so grants and limits made over IPv4 match.
    if (c.ip.family() == Poco::Net::AddressFamily::IPv6 && c.ip.isIPv4Mapped()) {
        std::string s = c.ip.toString();
        auto pos = s.rfind(':');
        c.ip = Poco::Net::IPAddress(s.substr(pos + 1));
    }
    c.port = sa.port();
    return c;
}

std::string ClientAddress::host() const { return ip.toString(); }

}  // namespace postern::core
