// Shared helpers for the abuse module tests: a thread-safe fake clock and address parsing.
#pragma once

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

}  // namespace postern::abuse::test
