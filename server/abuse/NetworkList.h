// Allow-lists of networks in CIDR notation (IPv4 and IPv6) and the counter key of a client
// address (IPv4 exact, IPv6 by prefix), shared by AuthPenalty, RateLimiter, ConnectionGate.
#pragma once

#include <Poco/Net/IPAddress.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace postern::abuse {

// An immutable list of networks. Thread-safe (const after construction).
// IPv4-mapped IPv6 clients (::ffff:a.b.c.d) are matched as the IPv4 address a.b.c.d.
class NetworkList {
public:
    NetworkList() = default;
    // `spec`: networks separated by commas and/or white space, each "addr" (a host: /32 or
    // /128) or "addr/prefix": "192.0.2.0/24, 10.0.0.1 2001:db8::/32". "" is the empty list.
    // Host bits set below the prefix are ignored ("192.0.2.7/24" means 192.0.2.0/24).
    // Throws std::invalid_argument naming the bad entry (fail at start-up).
    static NetworkList parse(std::string_view spec);

    bool contains(const Poco::Net::IPAddress& ip) const;
    bool empty() const { return networks_.empty(); }
    std::size_t size() const { return networks_.size(); }

private:
    struct Network {
        bool v4 = false;
        unsigned prefix = 0;
        std::array<unsigned char, 16> bytes{};  // masked to prefix
    };
    std::vector<Network> networks_;
};

// The text key counters use for a client: "192.0.2.7" for IPv4 (and IPv4-mapped IPv6);
// IPv6 masked to `ipv6Prefix` bits (0..128) and written "2001:db8:1:2::/64" (no suffix
// for 128), so a client rotating privacy addresses inside its /64 is one key.
std::string addressKey(const Poco::Net::IPAddress& ip, unsigned ipv6Prefix);

}  // namespace postern::abuse
