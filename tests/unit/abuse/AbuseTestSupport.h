// Shared helpers for the abuse module tests: a thread-safe fake clock, address parsing and
// the settings the tests start from (the settings structs have no defaults of their own:
// the app fills them from the keys, whose one default lives in the key table).
#pragma once

#include "abuse/AuthPenalty.h"
#include "abuse/RateLimiter.h"
#include "core/Clock.h"
#include "core/ClientAddress.h"

#include <atomic>
#include <chrono>
#include <string>

namespace postern::abuse::test {

// Starts at a fixed instant; advance() moves it. Safe to read from many threads.
class FakeClock {
public:
    core::TimePoint now() const { return core::TimePoint(std::chrono::milliseconds(ms_.load())); }
    void advance(std::chrono::milliseconds d) { ms_ += d.count(); }
    core::Clock fn() {
        return [this] { return now(); };
    }

private:
    std::atomic<long long> ms_{1700000000000LL};
};

inline core::ClientAddress addr(const std::string& ip) {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress(ip);
    return c;
}

// Penalty values the tests rely on: 15 min window, block after 10 failures per address and
// 20 per account, tarpit 1 s doubling to 8 s, IPv6 keyed by /64.
inline AuthPenaltySettings penaltyTestSettings() {
    AuthPenaltySettings s;
    s.window = std::chrono::minutes(15);
    s.maxFailuresIp = 10;
    s.maxFailuresAccount = 20;
    s.baseDelay = std::chrono::seconds(1);
    s.maxDelay = std::chrono::seconds(8);
    s.ipv6Prefix = 64;
    s.parallelWait = std::chrono::seconds(10);
    return s;
}

// 200 messages and 1000 recipients an hour, 1000 messages and 5000 recipients a day.
inline RateLimits rateTestLimits() { return RateLimits{200, 1000, 1000, 5000}; }

// The same limits per user and per address, IPv6 keyed by /64.
inline RateLimiterSettings rateTestSettings() {
    RateLimiterSettings s;
    s.user = rateTestLimits();
    s.ip = rateTestLimits();
    s.ipv6Prefix = 64;
    return s;
}

}  // namespace postern::abuse::test
