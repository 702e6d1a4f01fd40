// Escaping of untrusted values put into LDAP search filters (RFC 4515 3) and
// distinguished names (RFC 4514 2.4).
#include "LdapEscape.h"

namespace postern::plugins::ldap {

namespace {

void appendHex(std::string& out, unsigned char c) {
    static constexpr char Hex[] = "0123456789abcdef";
    out += '\\';
    out += Hex[c >> 4];
    out += Hex[c & 0x0f];
}

}  // namespace

std::string escapeFilterValue(std::string_view value) {
    std::string out;
    out.reserve(value.size() + 8);
    for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        // RFC 4515 3: these are the characters with a meaning inside a filter.
        if (c == '*' || c == '(' || c == ')' || c == '\\' || c == 0) {
            appendHex(out, c);
        } else {
            out += ch;
        }
    }
    return out;
}

std::string escapeDnValue(std::string_view value) {
    std::string out;
    out.reserve(value.size() + 8);
    for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if (c == 0) {
            appendHex(out, c);  // RFC 4514 2.4: NUL as "\00"
            continue;
        }
        const bool special = c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' ||
                             c == '\\' || c == '=';
        const bool leading = i == 0 && (c == '#' || c == ' ');
        const bool trailing = i + 1 == value.size() && c == ' ';
        if (special || leading || trailing) {
            out += '\\';
        }
        out += value[i];
    }
    return out;
}

}  // namespace postern::plugins::ldap
