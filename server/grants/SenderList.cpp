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

}  // namespace postern::grants
