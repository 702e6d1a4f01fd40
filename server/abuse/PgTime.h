// Instants between the abuse stores and PostgreSQL: microseconds since the epoch, bound as
// bigint and turned into timestamptz in SQL ('epoch' + n * 1us) - exact both ways, no
// time-zone text, no floating point.
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace postern::abuse {

inline std::int64_t toPgMicros(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

inline core::TimePoint fromPgMicros(std::int64_t us) {
    return core::TimePoint(std::chrono::duration_cast<core::TimePoint::duration>(std::chrono::microseconds(us)));
}

// Server error text for a log value: one line, no quotes, bounded.
inline std::string pgLogText(const std::string& s) {
    std::string out;
    for (unsigned char c : s.substr(0, 200))
        out += (c < 0x20 || c == '"' || c == 0x7f) ? '_' : static_cast<char>(c);
    return out;
}

}  // namespace postern::abuse
