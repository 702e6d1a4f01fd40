// The one duration parser (see Duration.h).
#include "core/Duration.h"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace postern::core {

std::chrono::milliseconds parseDuration(std::string_view text) {
    auto bad = [&](const char* why) {
        return std::invalid_argument("bad duration '" + std::string(text) + "': " + why);
    };
    std::string_view t = text;
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    constexpr std::int64_t Max = std::numeric_limits<std::int64_t>::max();
    std::size_t i = 0;
    std::int64_t n = 0;
    for (; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i) {
        const int d = t[i] - '0';
        if (n > (Max - d) / 10) throw bad("too large");
        n = n * 10 + d;
    }
    if (i == 0) throw bad("expected a number with a unit: ms, s, m, h or d (e.g. 500ms, 30s, 5m)");
    std::string_view rest = t.substr(i);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);  // "5 s"
    std::string unit(rest);
    for (char& c : unit)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    std::int64_t mult = 0;
    if (unit == "ms") mult = 1;
    else if (unit == "s" || unit.empty()) mult = 1000;
    else if (unit == "m") mult = 60'000;
    else if (unit == "h") mult = 3'600'000;
    else if (unit == "d") mult = 86'400'000;
    else throw bad("unknown unit (use ms, s, m, h or d)");
    if (n > Max / mult) throw bad("too large");
    return std::chrono::milliseconds(n * mult);
}

}  // namespace postern::core
