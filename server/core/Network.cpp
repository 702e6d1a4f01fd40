// Addresses, networks, network lists and address keys (see Network.h).
#include "core/Network.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace postern::core {

namespace {

using Bytes = std::array<unsigned char, 16>;

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// Copies the address's bytes (4 or 16) into a zeroed 16-byte array.
Bytes bytesOf(const Poco::Net::IPAddress& ip) {
    Bytes b{};
    std::memcpy(b.data(), ip.addr(), ip.family() == Poco::Net::AddressFamily::IPv4 ? 4 : 16);
    return b;
}

// Clears every bit at or after `prefix`.
void maskBits(Bytes& bytes, unsigned prefix) {
    for (unsigned i = 0; i < bytes.size(); ++i) {
        const unsigned bitsHere = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bitsHere < 8) bytes[i] &= static_cast<unsigned char>(0xFF00u >> bitsHere);
    }
}

bool isSeparator(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

[[noreturn]] void bad(std::string_view text, const std::string& why) {
    throw std::invalid_argument("bad network '" + std::string(text) + "': " + why);
}

}  // namespace

std::optional<unsigned> parseDecimal(std::string_view s, unsigned max) {
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    unsigned v = 0;
    for (char c : s) {
        if (!isDigit(c)) return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > max) return std::nullopt;
    return v;
}

std::optional<Poco::Net::IPAddress> parseIpv4(std::string_view s) {
    std::array<unsigned char, 4> bytes{};
    std::size_t part = 0;
    std::size_t pos = 0;
    for (;;) {
        const std::size_t dot = s.find('.', pos);
        const std::string_view tok = s.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
        if (part >= 4) return std::nullopt;
        auto v = parseDecimal(tok, 255);
        if (!v) return std::nullopt;
        bytes[part++] = static_cast<unsigned char>(*v);
        if (dot == std::string_view::npos) break;
        pos = dot + 1;
    }
    if (part != 4) return std::nullopt;
    return Poco::Net::IPAddress(bytes.data(), 4);
}

std::optional<Poco::Net::IPAddress> parseIpv6(std::string_view s) {
    // 45 = the longest text form ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
    if (s.empty() || s.size() > 45) return std::nullopt;
    for (char c : s)
        if (!isHex(c) && c != ':' && c != '.') return std::nullopt;  // no zone ("%eth0"), no brackets
    char buf[46];
    std::memcpy(buf, s.data(), s.size());
    buf[s.size()] = '\0';
    unsigned char out[16];
    if (::inet_pton(AF_INET6, buf, out) != 1) return std::nullopt;
    return Poco::Net::IPAddress(out, 16);
}

std::optional<Poco::Net::IPAddress> parseAddress(std::string_view text) {
    return text.find(':') != std::string_view::npos ? parseIpv6(text) : parseIpv4(text);
}

Poco::Net::IPAddress unmapped(const Poco::Net::IPAddress& ip) {
    if (ip.family() == Poco::Net::AddressFamily::IPv6 && ip.isIPv4Mapped())
        return Poco::Net::IPAddress(static_cast<const unsigned char*>(ip.addr()) + 12, 4);
    return ip;
}

// ---------------------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------------------

Network Network::parse(std::string_view text) {
    if (text.empty()) bad(text, "empty");
    const std::size_t slash = text.find('/');
    const std::string_view host = text.substr(0, slash);
    std::optional<Poco::Net::IPAddress> ip = parseAddress(host);
    if (!ip) bad(text, "'" + std::string(host) + "' is not an IPv4 or IPv6 address");
    const bool v4 = ip->family() == Poco::Net::AddressFamily::IPv4;
    const unsigned maxPrefix = v4 ? 32 : 128;
    unsigned prefix = maxPrefix;
    if (slash != std::string_view::npos) {
        auto p = parseDecimal(text.substr(slash + 1), maxPrefix);
        if (!p) bad(text, "the prefix length must be a number 0.." + std::to_string(maxPrefix));
        prefix = *p;
    }
    // "::ffff:10.0.0.0/104" is the IPv4 network 10.0.0.0/8: clients are matched unmapped.
    if (!v4 && ip->isIPv4Mapped() && prefix >= 96) {
        ip = unmapped(*ip);
        prefix -= 96;
    }
    Bytes bytes = bytesOf(*ip);
    Bytes masked = bytes;
    maskBits(masked, prefix);
    if (masked != bytes) {
        const Network suggestion(Poco::Net::IPAddress(masked.data(), ip->length()), prefix);
        bad(text, "address bits are set below the /" + std::to_string(prefix) + " prefix (did you mean " +
                      suggestion.toString() + "?)");
    }
    return Network(*ip, prefix);
}

bool Network::contains(const Poco::Net::IPAddress& client) const {
    const Poco::Net::IPAddress ip = unmapped(client);
    if (ip.family() != address_.family()) return false;
    Bytes b = bytesOf(ip);
    maskBits(b, prefix_);
    return b == bytesOf(address_);
}

std::string Network::toString() const {
    // inet_ntop, not IPAddress::toString: Poco prints some IPv4-compatible addresses wrongly
    // ("::8f" as "::"), and this text must parse back to the same network.
    char buf[INET6_ADDRSTRLEN];
    ::inet_ntop(isIPv4() ? AF_INET : AF_INET6, address_.addr(), buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(prefix_);
}

// ---------------------------------------------------------------------------------------
// NetworkList
// ---------------------------------------------------------------------------------------

NetworkList NetworkList::parse(std::string_view spec) {
    NetworkList list;
    std::size_t i = 0;
    while (i < spec.size()) {
        if (isSeparator(spec[i])) {
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < spec.size() && !isSeparator(spec[end])) ++end;
        list.networks_.push_back(Network::parse(spec.substr(i, end - i)));
        i = end;
    }
    return list;
}

bool NetworkList::contains(const Poco::Net::IPAddress& ip) const {
    for (const Network& n : networks_)
        if (n.contains(ip)) return true;
    return false;
}

std::string NetworkList::toString() const {
    std::string s;
    for (const Network& n : networks_) {
        if (!s.empty()) s += ", ";
        s += n.toString();
    }
    return s;
}

// ---------------------------------------------------------------------------------------
// Address keys
// ---------------------------------------------------------------------------------------

std::string addressKey(const Poco::Net::IPAddress& client, unsigned ipv6Prefix) {
    const Poco::Net::IPAddress ip = unmapped(client);
    Bytes b = bytesOf(ip);
    // Rebuilt from bytes: drops an IPv6 scope id, so "fe80::1%eth0" and "fe80::1" are one key.
    // IPAddress::toString, not inet_ntop: these texts are stored keys and must not change
    // (Poco writes the deprecated IPv4-compatible "::8f" as "::", a harmless collision).
    if (ip.family() == Poco::Net::AddressFamily::IPv4) return Poco::Net::IPAddress(b.data(), 4).toString();
    const unsigned prefix = ipv6Prefix > 128 ? 128 : ipv6Prefix;
    maskBits(b, prefix);
    std::string s = Poco::Net::IPAddress(b.data(), 16).toString();
    if (prefix < 128) s += "/" + std::to_string(prefix);
    return s;
}

std::optional<std::string> parseAddressKey(std::string_view text, unsigned ipv6Prefix) {
    const std::size_t slash = text.find('/');
    if (slash == std::string_view::npos) {
        auto ip = parseAddress(text);
        if (!ip) return std::nullopt;
        return addressKey(*ip, ipv6Prefix);
    }
    auto ip = parseIpv6(text.substr(0, slash));
    auto prefix = parseDecimal(text.substr(slash + 1), 128);
    if (!ip || !prefix || ip->isIPv4Mapped()) return std::nullopt;
    std::string key = addressKey(*ip, *prefix);
    // Only the canonical spelling: another one would name a row that can never match.
    if (key != text) return std::nullopt;
    return key;
}

}  // namespace postern::core
