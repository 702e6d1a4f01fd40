// Port: operator-visible counters and latencies (the metrics endpoint implements it).
// Protocol code reports events by name; it never knows how they are exported.
#pragma once

#include <string_view>

namespace postern::core {

// Thread-safe; calls must be cheap (hot path).
class EventCounters {
public:
    virtual ~EventCounters() = default;
    // e.g. count("smtp_message", "accepted"), count("smtp_reject", "relay_denied").
    virtual void count(std::string_view event, std::string_view label) = 0;
    // e.g. observe("smtp_session", seconds).
    virtual void observe(std::string_view what, double seconds) = 0;
};

// Does nothing: the default when no metrics endpoint is configured and in unit tests.
class NullEventCounters final : public EventCounters {
public:
    void count(std::string_view, std::string_view) override {}
    void observe(std::string_view, double) override {}
    static NullEventCounters& instance() {
        static NullEventCounters n;
        return n;
    }
};

}  // namespace postern::core
