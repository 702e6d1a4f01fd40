#include "pg/Arrays.h"

#include <algorithm>
#include <exception>

namespace postern::pg {

std::string textArray(const std::vector<std::string>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) {
        out += i ? ",\"" : "\"";
        for (char c : items[i]) {
            if (c == '\\' || c == '"') out += '\\';
            out += c;
        }
        out += '"';
    }
    return out + "}";
}

std::string bigintArray(const std::vector<std::uint64_t>& items) {
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + std::to_string(items[i]);
    return out + "}";
}

std::optional<std::vector<std::uint64_t>> parseBigintArray(const std::string& text) {
    if (text.size() < 2 || text.front() != '{' || text.back() != '}') return std::nullopt;
    std::vector<std::uint64_t> out;
    std::size_t pos = 1;
    while (pos < text.size() - 1) {
        const std::size_t end = std::min(text.find(',', pos), text.size() - 1);
        const std::string item = text.substr(pos, end - pos);
        if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        try {
            out.push_back(std::stoull(item));
        } catch (const std::exception&) {
            return std::nullopt;
        }
        pos = end + 1;
    }
    return out;
}

}  // namespace postern::pg
