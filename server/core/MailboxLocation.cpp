#include "core/MailboxLocation.h"

namespace postern::core {

std::optional<std::string> normalizeMailboxLocation(std::string_view m) {
    // Never a directory outside the mail root.
    if (m.empty() || m.front() == '/') return std::nullopt;
    for (char c : m)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
    if (m.back() == '/') m.remove_suffix(1);
    std::size_t start = 0;
    while (start <= m.size()) {
        auto end = m.find('/', start);
        if (end == std::string_view::npos) end = m.size();
        const std::string_view part = m.substr(start, end - start);
        if (part.empty() || part == "." || part == "..") return std::nullopt;
        if (start == 0 && part == SpoolDirName) return std::nullopt;
        start = end + 1;
    }
    return std::string(m);
}

}  // namespace postern::core
