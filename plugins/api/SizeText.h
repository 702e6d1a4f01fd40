// A size in bytes written as a number with an optional unit: "1000", "100B", "512K", "25M",
// "1G" (powers of 1024, case-insensitive, blanks around ignored). One parser for the
// configuration's sizes (config::parseSize), the quota a backend returns (AuthFacade) and what
// a backend shows of it (posternctl user show); header-only, so that plugins share it without
// linking the server. No sign: a leading '-' is not a size (a quota's "-1" is handled by
// quotaBytesOf).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace postern::plugins::api {

enum class SizeError : std::uint8_t { None, NotANumber, BadUnit, TooLarge };

// The size, or nullopt with why in *error.
inline std::optional<std::uint64_t> parseSizeText(std::string_view text, SizeError* error = nullptr) {
    auto fail = [error](SizeError e) -> std::optional<std::uint64_t> {
        if (error != nullptr) *error = e;
        return std::nullopt;
    };
    auto blank = [](char c) { return c == ' ' || c == '\t'; };
    while (!text.empty() && blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && blank(text.back())) text.remove_suffix(1);
    std::size_t i = 0;
    std::uint64_t n = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        auto d = static_cast<std::uint64_t>(text[i] - '0');
        if (n > (UINT64_MAX - d) / 10) return fail(SizeError::TooLarge);
        n = n * 10 + d;
    }
    if (i == 0) return fail(SizeError::NotANumber);
    std::string_view unit = text.substr(i);
    while (!unit.empty() && blank(unit.front())) unit.remove_prefix(1);
    unsigned shift = 0;
    if (unit.size() > 1) return fail(SizeError::BadUnit);
    if (unit.size() == 1) {
        switch (unit[0] | 0x20) {
        case 'b': shift = 0; break;
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return fail(SizeError::BadUnit);
        }
    }
    if (shift != 0 && (n >> (64 - shift)) != 0) return fail(SizeError::TooLarge);
    if (error != nullptr) *error = SizeError::None;
    return n << shift;
}

// A backend's quota attribute: nullopt for none (absent, empty, 0 or negative, as
// PostfixAdmin's -1), else the bytes; *bad is set when the text is not a size at all (the
// caller logs it; a limit that cannot be read enforces nothing).
inline std::optional<std::uint64_t> quotaBytesOf(std::string_view text, bool* bad = nullptr) {
    if (bad != nullptr) *bad = false;
    std::string_view t = text;
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    if (t.empty()) return std::nullopt;
    if (t.front() == '-') {
        // "-1" and the like: none. Anything else after the sign is not a size.
        if (parseSizeText(t.substr(1))) return std::nullopt;
        if (bad != nullptr) *bad = true;
        return std::nullopt;
    }
    auto n = parseSizeText(t);
    if (!n) {
        if (bad != nullptr) *bad = true;
        return std::nullopt;
    }
    if (*n == 0) return std::nullopt;
    return n;
}

}  // namespace postern::plugins::api
