// The injectable wall clock (penalties, rate and connection limits, grants). Wall-clock time
// (not steady) because counters and grants may be shared with other nodes through
// PostgreSQL, where only wall-clock instants mean the same thing everywhere.
#pragma once

#include <chrono>
#include <functional>

namespace postern::core {

using TimePoint = std::chrono::system_clock::time_point;
// Must be thread-safe when the object using it is (a plain function or lambda is).
using Clock = std::function<TimePoint()>;

// `clock` if set, else std::chrono::system_clock::now.
inline Clock clockOrSystem(Clock clock) {
    if (clock)
        return clock;
    return [] { return std::chrono::system_clock::now(); };
}

}  // namespace postern::core
