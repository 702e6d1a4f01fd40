// ASCII white-space trimming for protocol and configuration text (no locale, no UTF-8
// awareness needed: only the ASCII blanks and line ends are removed).
#pragma once

#include <string_view>

namespace postern::core {

// Without leading and trailing SP and HTAB (RFC 5234 WSP).
constexpr std::string_view trimBlanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Without leading and trailing SP, HTAB, CR and LF.
constexpr std::string_view trimSpace(std::string_view s) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

}  // namespace postern::core
