#include "delivery/RetrySchedule.h"

#include <algorithm>

namespace postern::delivery {

std::chrono::milliseconds retryDelay(const std::vector<std::chrono::milliseconds>& schedule,
                                     std::uint32_t failedAttempts) {
    if (schedule.empty() || failedAttempts == 0) return std::chrono::milliseconds(0);
    std::size_t i = std::min<std::size_t>(failedAttempts - 1, schedule.size() - 1);
    return schedule[i];
}

SysTime nextAttemptTime(const std::vector<std::chrono::milliseconds>& schedule, std::uint32_t failedAttempts,
                        SysTime now, SysTime expiry) {
    SysTime next = now + retryDelay(schedule, failedAttempts);
    // Past its lifetime the message was just bounced; it is still here only because the
    // bounce could not be sent (sink or directory unavailable): back off as usual, or it
    // would be run again at once, over and over.
    if (expiry <= now) return next;
    return std::min(next, expiry);
}

}  // namespace postern::delivery
