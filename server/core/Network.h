// The product's one vocabulary of client addresses and networks: strict address text,
// IPv4-mapped IPv6 folded to IPv4, CIDR networks and lists of them (PROXY trust, allow-lists),
// and the key a client address is counted and granted under (penalties, rate and connection
// limits, POP-before-SMTP grants; the shared PostgreSQL tables store these keys).
#pragma once

#include <Poco/Net/IPAddress.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core {

// A decimal number 0..max (max <= 99999) without sign or leading zeros ("08" could be read
// as octal elsewhere): prefix lengths, octets, ports. nullopt otherwise.
std::optional<unsigned> parseDecimal(std::string_view text, unsigned max);

// Strict address text, never inet_aton's forms ("10", "0x0a.1", octal "010.0.0.1", "10.1"
// would silently mean another address in a trust list):
// - IPv4: exactly four decimal numbers 0..255 without leading zeros, separated by one dot;
// - IPv6: what inet_pton(AF_INET6) takes ("2001:db8::1", "::ffff:192.0.2.1"); no zone id.
// nullopt for anything else. An IPv6 text is returned as IPv6 (see unmapped()).
std::optional<Poco::Net::IPAddress> parseIpv4(std::string_view text);
std::optional<Poco::Net::IPAddress> parseIpv6(std::string_view text);
// Either family: a text with a ':' is IPv6, else IPv4.
std::optional<Poco::Net::IPAddress> parseAddress(std::string_view text);

// ::ffff:a.b.c.d as the IPv4 address a.b.c.d (how a dual-stack socket spells an IPv4
// client); every other address unchanged. Lists, keys and logs all see the IPv4 spelling.
Poco::Net::IPAddress unmapped(const Poco::Net::IPAddress& ip);

// One CIDR network, IPv4 or IPv6. Immutable; thread-safe.
class Network {
public:
    // "addr" (a host: /32 or /128) or "addr/prefix" (0..32 for IPv4, 0..128 for IPv6).
    // Strict: address as parseAddress(); prefix decimal without leading zeros; no bit set
    // below the prefix ("10.1.2.3/8" is refused, suggesting "10.0.0.0/8": a masked typo in
    // a trust list would silently trust a whole network). An IPv4-mapped network
    // ("::ffff:10.0.0.0/104", "::ffff:192.0.2.7") is stored as the IPv4 network it means
    // (10.0.0.0/8, 192.0.2.7/32); a mapped prefix shorter than /96 stays IPv6.
    // Throws std::invalid_argument: "bad network '<text>': <why>".
    static Network parse(std::string_view text);

    // True if ip lies in the network. IPv4-mapped IPv6 clients match as their IPv4
    // address; an IPv4 network never matches a (non-mapped) IPv6 address or vice versa,
    // so "::/0" is every IPv6 client and "0.0.0.0/0" every IPv4 one.
    bool contains(const Poco::Net::IPAddress& ip) const;

    const Poco::Net::IPAddress& address() const { return address_; }  // host bits zero
    unsigned prefix() const { return prefix_; }
    bool isIPv4() const { return address_.family() == Poco::Net::AddressFamily::IPv4; }
    // Canonical text, always with the prefix: "10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32".
    // parse(toString()) gives the same network.
    std::string toString() const;

    bool operator==(const Network& other) const { return prefix_ == other.prefix_ && address_ == other.address_; }

private:
    Network(Poco::Net::IPAddress address, unsigned prefix) : address_(std::move(address)), prefix_(prefix) {}
    Poco::Net::IPAddress address_;
    unsigned prefix_ = 0;
};

// A list of networks (PROXY trusted balancers, abuse allow-lists). Immutable after parse();
// const methods are thread-safe.
class NetworkList {
public:
    // Trusts nobody: an empty list never means "everyone".
    NetworkList() = default;

    // Entries separated by commas and/or white space: "10.0.0.0/8, 2001:db8::/32 127.0.0.1".
    // "" (or only separators) is the empty list. Each entry as Network::parse(); the first
    // bad entry throws std::invalid_argument naming it.
    static NetworkList parse(std::string_view spec);

    bool contains(const Poco::Net::IPAddress& ip) const;
    bool empty() const { return networks_.empty(); }
    std::size_t size() const { return networks_.size(); }
    const std::vector<Network>& networks() const { return networks_; }
    // Canonical form, e.g. "10.0.0.0/8, 2001:db8::/32" ("" when empty).
    std::string toString() const;

private:
    std::vector<Network> networks_;
};

// The key a client address is counted and granted under: IPv4 (and IPv4-mapped IPv6)
// exact as "192.0.2.7"; IPv6 masked to ipv6Prefix bits (0..128; more counts as 128) as
// "2001:db8:1:2::/64", without a suffix for 128 ("2001:db8::1"), so a client rotating
// privacy addresses inside its /64 is one key. These texts are primary keys of shared
// PostgreSQL tables (grants, penalties, rate counters): never change their spelling.
std::string addressKey(const Poco::Net::IPAddress& ip, unsigned ipv6Prefix);

// Parses what an operator types for a key (posternctl grant add/revoke): an address
// (strict, as parseAddress(); keyed like a client from it with ipv6Prefix) or an IPv6 key
// already in canonical form ("2001:db8:1:2::/64"; another spelling would name a row that can
// never match). nullopt if it is neither.
std::optional<std::string> parseAddressKey(std::string_view text, unsigned ipv6Prefix);

}  // namespace postern::core
