// Bucketed sliding-window counter.
#include "abuse/SlidingWindow.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace postern::abuse {

SlidingWindow::SlidingWindow(std::chrono::milliseconds window, unsigned buckets) : window_(window) {
    if (window <= std::chrono::milliseconds::zero())
        throw std::invalid_argument("sliding window must be positive");
    if (buckets < 1 || buckets > 3600)
        throw std::invalid_argument("sliding window bucket count must be 1..3600");
    width_ = std::max(std::chrono::milliseconds(1), window / buckets);
    // One bucket more than the window holds: the oldest one is only partly inside the
    // window, and counting it whole is what makes the limit strict.
    buckets_.assign(buckets + 1, 0);
}

void SlidingWindow::advance(core::TimePoint now) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::int64_t bucket = ms >= 0 ? ms / width_.count() : -((-ms + width_.count() - 1) / width_.count());
    const auto size = static_cast<std::int64_t>(buckets_.size());
    if (!started_) {
        started_ = true;
        head_ = bucket;
        return;
    }
    if (bucket <= head_)
        return;  // same bucket, or the clock stepped back: keep counting in the newest
    if (bucket - head_ >= size) {
        std::fill(buckets_.begin(), buckets_.end(), 0);
    } else {
        for (std::int64_t b = head_ + 1; b <= bucket; ++b)
            buckets_[static_cast<std::size_t>(((b % size) + size) % size)] = 0;
    }
    head_ = bucket;
}

std::uint64_t SlidingWindow::total(core::TimePoint now) {
    advance(now);
    std::uint64_t sum = 0;
    for (auto b : buckets_)
        sum += b;
    return sum;
}

void SlidingWindow::add(core::TimePoint now, std::uint32_t amount) {
    advance(now);
    const auto size = static_cast<std::int64_t>(buckets_.size());
    auto& slot = buckets_[static_cast<std::size_t>(((head_ % size) + size) % size)];
    constexpr auto max = std::numeric_limits<std::uint32_t>::max();
    slot = amount > max - slot ? max : slot + amount;
}

}  // namespace postern::abuse
