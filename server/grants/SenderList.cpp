#include "grants/SenderList.h"

namespace postern::grants {

std::string joinSenders(const std::vector<std::string>& senders) {
    std::string out;
    for (const auto& s : senders) {
        if (s.find('\n') != std::string::npos) continue;
        if (!out.empty()) out += '\n';
        out += s;
    }
    return out;
}

std::vector<std::string> splitSenders(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        auto nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        if (nl > start) out.push_back(text.substr(start, nl - start));
        start = nl + 1;
    }
    return out;
}

std::string joinLimits(const std::map<std::string, std::string>& limits) {
    std::string out;
    for (const auto& [name, value] : limits) {
        if (name.empty() || name.find_first_of("=\n") != std::string::npos || value.find('\n') != std::string::npos)
            continue;
        if (!out.empty()) out += '\n';
        out += name + "=" + value;
    }
    return out;
}

std::map<std::string, std::string> splitLimits(const std::string& text) {
    std::map<std::string, std::string> out;
    for (const std::string& line : splitSenders(text)) {
        const auto eq = line.find('=');
        if (eq == std::string::npos || eq == 0) continue;
        out.emplace(line.substr(0, eq), line.substr(eq + 1));
    }
    return out;
}

}  // namespace postern::grants
