// Rehash on login, the decision (see RehashPolicy.h).
#include "auth/RehashPolicy.h"

#include <algorithm>
#include <array>
#include <utility>

namespace postern::auth {

namespace {

std::string upper(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c);
    });
    return out;
}

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Method of a crypt(3) value by its prefix (the ones PasswordScheme verifies, and the other
// libxcrypt methods, which are old or at least not the target either).
std::string cryptMethodOf(std::string_view value) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 12> Methods{{
        {"$argon2id$", "ARGON2ID"},
        {"$argon2i$", "ARGON2I"},
        {"$1$", "MD5-CRYPT"},
        {"$5$", "SHA256-CRYPT"},
        {"$6$", "SHA512-CRYPT"},
        {"$2y$", "BLF-CRYPT"},
        {"$2b$", "BLF-CRYPT"},
        {"$2a$", "BLF-CRYPT"},
        {"$y$", "YESCRYPT"},
        {"$gy$", "GOST-YESCRYPT"},
        {"$7$", "SCRYPT"},
        {"$sha1$", "SHA1-CRYPT"},
    }};
    for (const auto& [prefix, name] : Methods) {
        if (startsWith(value, prefix)) {
            return std::string(name);
        }
    }
    return "CRYPT";  // DES, BSDi, NT, ...: all older than any target
}

}  // namespace

std::string canonicalSchemeName(std::string_view nameIn) {
    std::string name = upper(nameIn);
    if (auto dot = name.rfind('.'); dot != std::string::npos) {
        const std::string suffix = name.substr(dot + 1);
        if (suffix == "HEX" || suffix == "B64" || suffix == "BASE64") {
            name.resize(dot);
        }
    }
    if (name == "BCRYPT") return "BLF-CRYPT";
    if (name == "CLEARTEXT") return "PLAIN";
    if (name == "SHA1") return "SHA";
    return name;
}

std::string storedSchemeOf(std::string_view stored) {
    if (stored.empty()) {
        return "";
    }
    if (stored[0] == '$') {
        return cryptMethodOf(stored);
    }
    // An unprefixed traditional DES crypt (13 characters of [./0-9A-Za-z]), which
    // verifyPassword reads as CRYPT, as Dovecot does: CRYPT too, so it is upgraded (review
    // finding: it was never rehashed).
    if (stored.size() == 13 && std::all_of(stored.begin(), stored.end(), [](char c) {
            return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        })) {
        return "CRYPT";
    }
    if (stored[0] != '{') {
        return "";
    }
    const auto close = stored.find('}');
    if (close == std::string_view::npos || close == 1) {
        return "";
    }
    const std::string scheme = canonicalSchemeName(stored.substr(1, close - 1));
    const std::string_view value = stored.substr(close + 1);
    if (scheme == "CRYPT") {
        return cryptMethodOf(value);
    }
    // Dovecot's {MD5}: MD5-CRYPT when the value says so, else a plain MD5 digest.
    if (scheme == "MD5") {
        return startsWith(value, "$1$") ? "MD5-CRYPT" : "PLAIN-MD5";
    }
    return scheme;
}

std::optional<std::string> rehashFrom(const RehashCandidate& c, HashScheme target) {
    if (!c.loginSucceeded || c.answer == nullptr || c.answer->status != plugins::api::Status::Ok ||
        !c.answer->appPasswordId.empty()) {
        return std::nullopt;
    }
    // The host verified this hash itself: it is the authority on its scheme. A backend that
    // verified the password may name the scheme; if it does not, nothing is known.
    const std::string from = !c.answer->verified ? storedSchemeOf(c.answer->record.passwordHash)
                                                 : canonicalSchemeName(c.answer->storedScheme);
    if (from.empty() || from == "?" || from == canonicalSchemeName(schemeName(target))) {
        return std::nullopt;
    }
    // A password as long as the prefix read (8, 72) may itself be the prefix of the real one.
    if ((from == "CRYPT" && c.passwordLength >= 8) || (from == "BLF-CRYPT" && c.passwordLength >= 72)) {
        return std::nullopt;
    }
    return from;
}

}  // namespace postern::auth
