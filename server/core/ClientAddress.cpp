#include "core/ClientAddress.h"

#include "core/Network.h"

namespace postern::core {

ClientAddress ClientAddress::fromSocket(const Poco::Net::SocketAddress& sa) {
    ClientAddress c;
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; keep one spelling
    // so grants and limits made over IPv4 match.
    c.ip = unmapped(sa.host());
    c.port = sa.port();
    return c;
}

std::string ClientAddress::host() const { return ip.toString(); }

}  // namespace postern::core
