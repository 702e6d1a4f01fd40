#include "core/Utf8.h"

#include <Poco/Unicode.h>

namespace postern::core {

std::size_t utf8SequenceLength(std::string_view s, std::size_t pos) {
    auto at = [&](std::size_t i) -> unsigned char { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0; };
    auto cont = [](unsigned char b) { return b >= 0x80 && b <= 0xBF; };
    const unsigned char c = at(pos);
    if (c >= 0xC2 && c <= 0xDF) return cont(at(pos + 1)) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        const unsigned char c1 = at(pos + 1);
        const bool ok1 = c == 0xE0 ? (c1 >= 0xA0 && c1 <= 0xBF)   // no overlong 3-octet form
                         : c == 0xED ? (c1 >= 0x80 && c1 <= 0x9F)  // no surrogates D800..DFFF
                                     : cont(c1);
        return ok1 && cont(at(pos + 2)) ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        const unsigned char c1 = at(pos + 1);
        const bool ok1 = c == 0xF0 ? (c1 >= 0x90 && c1 <= 0xBF)   // no overlong 4-octet form
                         : c == 0xF4 ? (c1 >= 0x80 && c1 <= 0x8F)  // nothing above U+10FFFF
                                     : cont(c1);
        return ok1 && cont(at(pos + 2)) && cont(at(pos + 3)) ? 4 : 0;
    }
    return 0;
}

bool isValidUtf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const std::size_t n = utf8SequenceLength(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

bool isAscii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) > 127) return false;
    return true;
}

std::string asciiLower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

namespace {
bool insignificant(int cp) {
    // RFC 4518 2.2, mapped to nothing (beyond the controls and format characters below).
    if (cp == 0x034F || cp == 0x1806 || (cp >= 0x180B && cp <= 0x180D) || (cp >= 0xFE00 && cp <= 0xFE0F) ||
        cp == 0xFFFC)
        return true;
    Poco::Unicode::CharacterProperties p;
    Poco::Unicode::properties(cp, p);
    switch (p.type) {
    case Poco::Unicode::UCP_CONTROL:
    case Poco::Unicode::UCP_FORMAT:
    case Poco::Unicode::UCP_SPACE_SEPARATOR:
    case Poco::Unicode::UCP_LINE_SEPARATOR:
    case Poco::Unicode::UCP_PARAGRAPH_SEPARATOR:
        return true;
    default:
        return false;
    }
}
}  // namespace

bool hasInsignificantCharacters(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            if (c <= 0x20 || c == 0x7F) return true;
            ++i;
            continue;
        }
        const std::size_t n = utf8SequenceLength(s, i);
        if (n == 0) return false;
        int cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
        for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        if (insignificant(cp)) return true;
        i += n;
    }
    return false;
}

}  // namespace postern::core
