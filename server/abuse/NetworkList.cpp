// CIDR allow-lists and per-client counter keys.
#include "abuse/NetworkList.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>
#include <stdexcept>

namespace postern::abuse {

namespace {

struct RawAddress {
    bool v4 = false;
    std::array<unsigned char, 16> bytes{};
};

RawAddress rawOf(const Poco::Net::IPAddress& ip) {
    RawAddress r;
    const auto* p = static_cast<const unsigned char*>(ip.addr());
    if (ip.family() == Poco::Net::AddressFamily::IPv4) {
        r.v4 = true;
        std::memcpy(r.bytes.data(), p, 4);
    } else if (ip.isIPv4Mapped()) {
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; limits and
        // allow-lists made for a.b.c.d must apply to it.
        r.v4 = true;
        std::memcpy(r.bytes.data(), p + 12, 4);
    } else {
        std::memcpy(r.bytes.data(), p, 16);
    }
    return r;
}

void maskBits(std::array<unsigned char, 16>& bytes, unsigned prefix) {
    for (unsigned i = 0; i < 16; ++i) {
        unsigned bitsHere = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bitsHere >= 8)
            continue;
        bytes[i] &= static_cast<unsigned char>(0xFF00u >> bitsHere);
    }
}

bool isSeparator(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

}  // namespace

NetworkList NetworkList::parse(std::string_view spec) {
    NetworkList list;
    std::size_t i = 0;
    while (i < spec.size()) {
        if (isSeparator(spec[i])) {
            ++i;
            continue;
        }
        std::size_t end = i;
        while (end < spec.size() && !isSeparator(spec[end]))
            ++end;
        std::string entry(spec.substr(i, end - i));
        i = end;

        std::string addrText = entry;
        std::optional<unsigned> prefix;
        if (auto slash = entry.find('/'); slash != std::string::npos) {
            addrText = entry.substr(0, slash);
            std::string bits = entry.substr(slash + 1);
            if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos)
                throw std::invalid_argument("bad network prefix in '" + entry + "'");
            prefix = static_cast<unsigned>(std::stoul(bits));
        }
        // inet_pton, not IPAddress::parse: the latter takes inet_aton's short forms
        // ("192.0.2" = 192.0.0.2), which in an allow-list would silently mean another network.
        Network n;
        unsigned char raw[16] = {};
        if (::inet_pton(AF_INET, addrText.c_str(), raw) == 1) {
            n.v4 = true;
        } else if (::inet_pton(AF_INET6, addrText.c_str(), raw) != 1) {
            throw std::invalid_argument("bad network address in '" + entry + "'");
        }
        unsigned maxBits = n.v4 ? 32 : 128;
        n.prefix = prefix.value_or(maxBits);
        if (n.prefix > maxBits)
            throw std::invalid_argument("network prefix too long in '" + entry + "'");
        std::memcpy(n.bytes.data(), raw, n.v4 ? 4 : 16);
        // "::ffff:192.0.2.0/120" means 192.0.2.0/24: clients are matched as IPv4 (rawOf).
        static constexpr unsigned char mappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!n.v4 && n.prefix >= 96 && std::memcmp(raw, mappedPrefix, 12) == 0) {
            n.v4 = true;
            n.prefix -= 96;
            std::memmove(n.bytes.data(), n.bytes.data() + 12, 4);
            std::memset(n.bytes.data() + 4, 0, 12);
        }
        maskBits(n.bytes, n.prefix);
        list.networks_.push_back(n);
    }
    return list;
}

bool NetworkList::contains(const Poco::Net::IPAddress& ip) const {
    if (networks_.empty())
        return false;
    RawAddress r = rawOf(ip);
    for (const Network& n : networks_) {
        if (n.v4 != r.v4)
            continue;
        auto masked = r.bytes;
        maskBits(masked, n.prefix);
        if (std::memcmp(masked.data(), n.bytes.data(), n.v4 ? 4 : 16) == 0)
            return true;
    }
    return false;
}

std::string addressKey(const Poco::Net::IPAddress& ip, unsigned ipv6Prefix) {
    RawAddress r = rawOf(ip);
    if (r.v4)
        return Poco::Net::IPAddress(r.bytes.data(), 4).toString();
    if (ipv6Prefix > 128)
        ipv6Prefix = 128;
    maskBits(r.bytes, ipv6Prefix);
    std::string s = Poco::Net::IPAddress(r.bytes.data(), 16).toString();
    if (ipv6Prefix < 128)
        s += "/" + std::to_string(ipv6Prefix);
    return s;
}

}  // namespace postern::abuse
