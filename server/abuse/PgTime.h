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

}  // namespace postern::abuse
