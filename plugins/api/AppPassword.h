// App passwords: the format of the password, and the decision whether one may be used for a
// login (scope, expiry, networks). Header-only, compiled into the plugins that store app
// passwords (passwd-file, postgres), into posternctl and into the unit tests; no dependency
// beyond the C++ standard library and inet_pton.
//
// Format: "<id>-<secret>", id 8 and secret 24 characters of lower-case base32 (a-z, 2-7):
// 40 bits of public id, 120 bits of secret. The id is not secret: it is stored in clear next
// to the slow hash of the whole password, so a login finds the one hash to verify (one
// ARGON2ID per login however many app passwords an account has), like Fastmail's and
// GitHub's token prefixes. A main password that happens to look like this finds no app
// password with that id and is verified as a main password.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::plugins::api::apppw {

inline constexpr std::size_t IdLength = 8;
inline constexpr std::size_t SecretLength = 24;
inline constexpr std::size_t PasswordLength = IdLength + 1 + SecretLength;
inline constexpr std::size_t MaxLabelLength = 64;
inline constexpr std::size_t MaxNetworks = 32;

inline constexpr unsigned ScopeSmtp = 1;
inline constexpr unsigned ScopePop3 = 2;
inline constexpr unsigned ScopeAll = ScopeSmtp | ScopePop3;

inline bool isBase32(char c) { return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'); }

inline bool validId(std::string_view id) {
    if (id.size() != IdLength) return false;
    for (char c : id) {
        if (!isBase32(c)) return false;
    }
    return true;
}

// The id of a password in app password format; nullopt for anything else.
inline std::optional<std::string> idOf(std::string_view password) {
    if (password.size() != PasswordLength || password[IdLength] != '-') return std::nullopt;
    for (std::size_t i = 0; i < password.size(); ++i) {
        if (i != IdLength && !isBase32(password[i])) return std::nullopt;
    }
    return std::string(password.substr(0, IdLength));
}

// A label is shown by posternctl and stored in a passwd-file token: [A-Za-z0-9._@+-], 1..64.
inline bool validLabel(std::string_view label) {
    if (label.empty() || label.size() > MaxLabelLength) return false;
    for (char c : label) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == '-' || c == '@' || c == '+';
        if (!ok) return false;
    }
    return true;
}

// "smtp", "pop3", "all", "smtp,pop3" (any order) -> bits; 0 if anything else.
inline unsigned parseScopes(std::string_view text) {
    unsigned bits = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto comma = text.find(',', pos);
        std::string_view item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        if (item == "smtp") bits |= ScopeSmtp;
        else if (item == "pop3") bits |= ScopePop3;
        else if (item == "all") bits |= ScopeAll;
        else return 0;
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return bits;
}

// The user attribute (UserRecord::extra) a backend sets to scopesText() of the app password a
// login matched: the host gives a POP3 login a POP-before-SMTP grant only with "smtp" in it.
inline constexpr const char* ScopesAttribute = "app_password_scopes";

inline std::string scopesText(unsigned bits) {
    if (bits == ScopeAll) return "smtp,pop3";
    if (bits == ScopeSmtp) return "smtp";
    if (bits == ScopePop3) return "pop3";
    return "";
}

// An address as 16 bytes (IPv4 as ::ffff:a.b.c.d, so an IPv4-mapped client matches an IPv4
// network). False if text is no address.
inline bool parseAddress(std::string_view text, unsigned char out[16]) {
    std::string s(text);
    if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    unsigned char v4[4];
    if (::inet_pton(AF_INET, s.c_str(), v4) == 1) {
        std::memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        std::memcpy(out + 12, v4, 4);
        return true;
    }
    return ::inet_pton(AF_INET6, s.c_str(), out) == 1;
}

// One CIDR network ("10.0.0.0/8", "2001:db8::/32", a bare address = a host).
struct Network {
    unsigned char address[16] = {};
    unsigned prefix = 128;  // over the 16-byte form (IPv4 prefixes + 96)

    static std::optional<Network> parse(std::string_view text) {
        Network n;
        auto slash = text.find('/');
        std::string_view addr = text.substr(0, slash);
        if (!parseAddress(addr, n.address)) return std::nullopt;
        const bool v4 = addr.find(':') == std::string_view::npos;
        unsigned max = v4 ? 32 : 128;
        unsigned prefix = max;
        if (slash != std::string_view::npos) {
            std::string_view p = text.substr(slash + 1);
            if (p.empty() || p.size() > 3) return std::nullopt;
            prefix = 0;
            for (char c : p) {
                if (c < '0' || c > '9') return std::nullopt;
                prefix = prefix * 10 + static_cast<unsigned>(c - '0');
            }
            if (prefix > max) return std::nullopt;
        }
        n.prefix = v4 ? prefix + 96 : prefix;
        return n;
    }

    bool contains(const unsigned char ip[16]) const {
        unsigned bits = prefix;
        for (std::size_t i = 0; i < 16 && bits > 0; ++i) {
            const unsigned take = bits >= 8 ? 8 : bits;
            const unsigned char mask = static_cast<unsigned char>(0xff << (8 - take));
            if ((ip[i] & mask) != (address[i] & mask)) return false;
            bits -= take;
        }
        return true;
    }
};

// "a,b, c" -> items (trimmed, empty ones dropped).
inline std::vector<std::string> splitList(std::string_view text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto comma = text.find(',', pos);
        std::string_view item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return out;
}

// Every item a network and at most MaxNetworks of them ("" = any network is fine).
inline bool validNetworks(std::string_view text) {
    auto items = splitList(text);
    if (items.size() > MaxNetworks) return false;
    for (const auto& i : items) {
        if (!Network::parse(i)) return false;
    }
    return true;
}

// What a backend stores about one app password.
struct Entry {
    std::string id;
    std::string label;
    unsigned scopes = 0;
    std::int64_t expires = 0;    // unix seconds; 0 = never
    std::string networks;        // comma-separated CIDRs; "" = any
    std::string hash;            // "{SCHEME}hash" of the whole password
    std::int64_t created = 0;
    std::int64_t lastUsed = 0;
    std::string lastIp;
    std::int64_t revoked = 0;    // 0 = live
};

// May this app password be used to log in to `service` ("smtp" / "pop3") from clientIp at
// `now` (unix seconds)? "" = yes; else the reason, for the log (never a secret).
inline std::string refusal(const Entry& e, std::string_view service, std::string_view clientIp, std::int64_t now) {
    const std::string name = "app password " + e.id;
    if (e.revoked != 0) return name + " is revoked";
    const unsigned want = service == "smtp" ? ScopeSmtp : service == "pop3" ? ScopePop3 : 0;
    if (want == 0 || (e.scopes & want) == 0) {
        return name + " is not valid for " + std::string(service) + " (scope " + scopesText(e.scopes) + ")";
    }
    if (e.expires != 0 && now >= e.expires) return name + " has expired";
    const auto nets = splitList(e.networks);
    if (!nets.empty()) {
        unsigned char ip[16];
        if (!parseAddress(clientIp, ip)) return name + ": client address unknown, networks are restricted";
        bool inside = false;
        for (const auto& n : nets) {
            auto net = Network::parse(n);
            if (net && net->contains(ip)) {
                inside = true;
                break;
            }
        }
        if (!inside) return name + " is not valid from " + std::string(clientIp) + " (networks " + e.networks + ")";
    }
    return {};
}

inline constexpr const char* MainPasswordRefused = "account requires an app password (main password refused)";

}  // namespace postern::plugins::api::apppw
