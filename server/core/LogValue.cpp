#include "core/LogValue.h"

namespace postern::core {

namespace {

constexpr std::size_t MaxLogValue = 128;

// Length of the well-formed UTF-8 sequence (RFC 3629 4) starting at s[i], 0 if none.
std::size_t utf8Length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
    const unsigned char c = b(0);
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xe0 && b(1) < 0xa0) return 0;  // overlong
        if (c == 0xed && b(1) > 0x9f) return 0;  // surrogate
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xf0 && b(1) < 0x90) return 0;  // overlong
        if (c == 0xf4 && b(1) > 0x8f) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

void appendHex(std::string& out, unsigned char c) {
    static const char* hex = "0123456789abcdef";
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 0xf];
}

std::string escape(std::string_view s, std::size_t maxBytes, bool quoted) {
    std::string out;
    out.reserve(s.size() < maxBytes ? s.size() : maxBytes);
    std::size_t i = 0;
    while (i < s.size() && i < maxBytes) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            const bool separator = c == ' ' || c == '=';
            if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || (separator && !quoted))
                appendHex(out, c);
            else
                out += static_cast<char>(c);
            ++i;
            continue;
        }
        const std::size_t n = utf8Length(s, i);
        if (n == 0) {
            appendHex(out, c);  // not UTF-8: the byte, visibly
            ++i;
        } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) {
            appendHex(out, c);  // C1 control (NEL U+0085 is a line end to some readers)
            appendHex(out, static_cast<unsigned char>(s[i + 1]));
            i += 2;
        } else {
            out.append(s.substr(i, n));  // a sequence is never split by the cut
            i += n;
        }
    }
    if (i < s.size()) out += "...";
    return out;
}

int hexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string logValue(std::string_view s) {
    std::string out = escape(s, MaxLogValue, false);
    return out.empty() ? "-" : out;
}

std::string logQuotedText(std::string_view s, std::size_t maxBytes) { return escape(s, maxBytes, true); }

std::string logUnescape(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x') {
            const int hi = hexDigit(s[i + 2]), lo = hexDigit(s[i + 3]);
            if (hi >= 0 && lo >= 0) {
                out += static_cast<char>(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

}  // namespace postern::core
