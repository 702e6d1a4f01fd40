#include "store/DovecotUidlist.h"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace postern::store {

namespace {

std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && line[i] == ' ') ++i;
        std::size_t j = i;
        while (j < line.size() && line[j] != ' ') ++j;
        if (j > i) out.push_back(line.substr(i, j - i));
        i = j;
    }
    return out;
}

bool number(std::string_view s, std::uint32_t& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

bool validUidl(std::string_view s) {
    if (s.empty() || s.size() > 70) return false;
    for (char c : s)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

}  // namespace

std::unordered_map<std::string, std::string> dovecotUidls(std::string_view text) {
    std::unordered_map<std::string, std::string> out;
    auto nextLine = [&text]() -> std::string_view {
        const std::size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        return line;
    };
    const std::vector<std::string_view> header = fields(nextLine());
    if (header.empty()) return out;
    std::uint32_t uidValidity = 0;
    bool v3 = false;
    if (header[0] == "3") {
        v3 = true;
        for (std::size_t i = 1; i < header.size(); ++i)
            if (header[i].size() > 1 && header[i][0] == 'V') number(header[i].substr(1), uidValidity);
    } else if (header[0] == "1") {
        if (header.size() >= 2) number(header[1], uidValidity);
    } else {
        return out;
    }
    if (uidValidity == 0) return out;
    while (!text.empty()) {
        const std::string_view line = nextLine();
        std::string_view name, pop3Uidl;
        std::uint32_t uid = 0;
        if (v3) {
            // The file name follows the first field that starts with ':'.
            const std::size_t colon = line.find(" :");
            if (colon == std::string_view::npos) continue;
            name = line.substr(colon + 2);
            const std::vector<std::string_view> f = fields(line.substr(0, colon));
            if (f.empty() || !number(f[0], uid)) continue;
            for (std::size_t i = 1; i < f.size(); ++i)
                if (f[i].size() > 1 && f[i][0] == 'P') pop3Uidl = f[i].substr(1);
        } else {
            const std::vector<std::string_view> f = fields(line);
            if (f.size() != 2 || !number(f[0], uid)) continue;
            name = f[1];
        }
        const std::string_view base = name.substr(0, name.find(':'));
        if (uid == 0 || base.empty()) continue;
        std::string uidl;
        if (validUidl(pop3Uidl)) {
            uidl = pop3Uidl;
        } else {
            char buf[17];
            std::snprintf(buf, sizeof buf, "%08x%08x", uid, uidValidity);
            uidl = buf;
        }
        out.insert_or_assign(std::string(base), std::move(uidl));
    }
    return out;
}

}  // namespace postern::store
