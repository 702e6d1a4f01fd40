// When to try again after a temporary failure (RFC 5321 4.5.4.1: retry with growing
// intervals, give up after days): delivery.retry_schedule, the last step repeating,
// never beyond the message's lifetime.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace postern::delivery {

using SysTime = std::chrono::system_clock::time_point;

// Delay after the `failedAttempts`-th failed attempt (1 = the first): schedule[n-1], the
// last entry repeating; 0 failed attempts or an empty schedule -> 0.
std::chrono::milliseconds retryDelay(const std::vector<std::chrono::milliseconds>& schedule,
                                     std::uint32_t failedAttempts);

// The next attempt: now + retryDelay, but no later than expiry (arrival + lifetime) so
// the last attempt and the bounce happen on time.
SysTime nextAttemptTime(const std::vector<std::chrono::milliseconds>& schedule, std::uint32_t failedAttempts,
                        SysTime now, SysTime expiry);

}  // namespace postern::delivery
