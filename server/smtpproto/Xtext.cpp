#include "smtpproto/Xtext.h"

namespace postern::smtp {

namespace {

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

std::optional<std::string> decodeXtext(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        if (c == '+') {
            if (i + 2 >= text.size()) return std::nullopt;
            int hi = hexValue(text[i + 1]), lo = hexValue(text[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return std::nullopt;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string encodeXtext(std::string_view octets) {
    static constexpr char Hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(octets.size());
    for (char ch : octets) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c >= 33 && c <= 126 && c != '+' && c != '=') {
            out += ch;
        } else {
            out += '+';
            out += Hex[c >> 4];
            out += Hex[c & 15];
        }
    }
    return out;
}

bool isPrintableAscii(std::string_view s) {
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 33 || c > 126) return false;
    }
    return true;
}

}  // namespace postern::smtp
