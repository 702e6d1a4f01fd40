#include "core/LogValue.h"

namespace postern::core {

std::string logValue(std::string_view s) {
    constexpr std::size_t MaxLogValue = 128;
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(s.size() < MaxLogValue ? s.size() : MaxLogValue);
    for (unsigned char c : s.substr(0, MaxLogValue)) {
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '=') {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > MaxLogValue) out += "...";
    return out.empty() ? "-" : out;
}

}  // namespace postern::core
