// A bucketed sliding-window counter: the building block of rate limits (RateLimiter's
// hourly/daily counters, ConnectionGate's connections per minute).
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <vector>

namespace postern::abuse {

// Counts events in `buckets` + 1 fixed-width buckets (width = window / buckets, aligned to
// the epoch). total(now) is the sum of every bucket that overlaps [now - window, now], so
// the count is never less than the true number of events in the last `window`: a limit
// checked against it is never exceeded within any window-long interval. An event stops
// counting between `window` and `window + width` after it happened (the price of buckets:
// at most one bucket width, e.g. 5 minutes for the hour with 12 buckets).
//
// A clock that steps back is treated as standing still (events go to the newest bucket).
// Value type; not thread-safe (owners lock). Saturates at UINT32_MAX per bucket.
class SlidingWindow {
public:
    // window > 0 and 1 <= buckets <= 3600; bucket width is window / buckets (at least 1 ms).
    // Throws std::invalid_argument on a bad window or bucket count.
    SlidingWindow(std::chrono::milliseconds window, unsigned buckets);

    // Events counted at `now` (see above).
    std::uint64_t total(core::TimePoint now);
    void add(core::TimePoint now, std::uint32_t amount);
    // True when nothing counts any more at `now` (the owner may forget the counter).
    bool isEmpty(core::TimePoint now) { return total(now) == 0; }

    std::chrono::milliseconds window() const { return window_; }

private:
    void advance(core::TimePoint now);

    std::chrono::milliseconds window_;
    std::chrono::milliseconds width_;
    std::vector<std::uint32_t> buckets_;  // ring; head_ % size is the newest bucket
    std::int64_t head_ = 0;               // bucket number (time / width) of the newest bucket
    bool started_ = false;
};

}  // namespace postern::abuse
