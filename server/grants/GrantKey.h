// The key of a POP-before-SMTP grant: which client addresses one POP3 login covers.
// Header-only so posternctl (which does not link postern_grants) keys grants exactly as the
// daemon does.
#pragma once

#include <Poco/Net/IPAddress.h>

#include <cstring>
#include <optional>
#include <string>

namespace postern::grants {

// The key text of `ip`: IPv4 (and IPv4-mapped IPv6, "::ffff:a.b.c.d", a dual-stack socket's
// spelling of an IPv4 client) exact as "192.0.2.7"; IPv6 masked to `ipv6PrefixLength` bits
// (0..128) as "2001:db8:1:2::/64", without a suffix for 128 ("2001:db8::1"), so a client
// rotating privacy addresses inside its /64 keeps its grant. This text is the primary key of
// the shared table (schema/postgres/002_cluster.sql) and what the logs show.
inline std::string grantKeyText(const Poco::Net::IPAddress& ip, unsigned ipv6PrefixLength) {
    unsigned char bytes[16] = {};
    const auto* p = static_cast<const unsigned char*>(ip.addr());
    if (ip.family() == Poco::Net::AddressFamily::IPv4) {
        std::memcpy(bytes, p, 4);
        return Poco::Net::IPAddress(bytes, 4).toString();
    }
    if (ip.isIPv4Mapped()) {
        std::memcpy(bytes, p + 12, 4);
        return Poco::Net::IPAddress(bytes, 4).toString();
    }
    std::memcpy(bytes, p, 16);
    const unsigned prefix = ipv6PrefixLength > 128 ? 128 : ipv6PrefixLength;
    for (unsigned i = 0; i < 16; ++i) {
        const unsigned bitsHere = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bitsHere < 8)
            bytes[i] &= static_cast<unsigned char>(0xFF00u >> bitsHere);
    }
    std::string s = Poco::Net::IPAddress(bytes, 16).toString();
    if (prefix < 128)
        s += "/" + std::to_string(prefix);
    return s;
}

// Parses what an operator types for a grant: an address ("192.0.2.7", "2001:db8::1", keyed
// with ipv6PrefixLength like a login from it) or an already-masked IPv6 key
// ("2001:db8:1:2::/64", taken as is after checking it is in canonical key form).
// nullopt if it is neither.
inline std::optional<std::string> parseGrantKey(const std::string& text, unsigned ipv6PrefixLength) {
    const auto slash = text.find('/');
    Poco::Net::IPAddress ip;
    if (slash == std::string::npos) {
        if (!Poco::Net::IPAddress::tryParse(text, ip))
            return std::nullopt;
        return grantKeyText(ip, ipv6PrefixLength);
    }
    const std::string addr = text.substr(0, slash);
    const std::string len = text.substr(slash + 1);
    if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const unsigned prefix = static_cast<unsigned>(std::stoul(len));
    if (prefix > 128 || !Poco::Net::IPAddress::tryParse(addr, ip) ||
        ip.family() != Poco::Net::AddressFamily::IPv6 || ip.isIPv4Mapped())
        return std::nullopt;
    const std::string key = grantKeyText(ip, prefix);
    // Only the canonical spelling: another one would name a row that can never match.
    return key == text ? std::optional<std::string>(key) : std::nullopt;
}

}  // namespace postern::grants
