// The daemon's metrics: one Prometheus registry, the core::EventCounters the sessions
// report to, and the families the connection layer updates directly.
#pragma once

#include "core/EventCounters.h"
#include "metrics/MetricsRegistry.h"

#include <map>
#include <mutex>
#include <string>

namespace postern::app {

// Thread-safe. Families are created at construction; label values on first use.
class Telemetry final : public core::EventCounters {
public:
    Telemetry();

    void count(std::string_view event, std::string_view label) override;
    void observe(std::string_view what, double seconds) override;

    metrics::Registry& registry() { return registry_; }

    void connectionOpened(const std::string& listener) { connections_.labels({listener}).inc(); }
    void connectionRefused(const std::string& listener, std::string_view reason) {
        refused_.labels({listener, reason}).inc();
    }
    void sessionEnded(std::string_view svc, double seconds) { sessionSeconds_.labels({svc}).observe(seconds); }
    void grantsExpired(std::size_t n) {
        if (n) grants_.labels({"expired"}).inc(n);
    }
    void authResult(std::string_view svc, std::string_view backend, std::string_view result, double seconds) {
        authResults_.labels({svc, backend, result}).inc();
        authSeconds_.labels({svc}).observe(seconds);
    }

private:
    metrics::Registry registry_;
    metrics::Family<metrics::Counter>& connections_;
    metrics::Family<metrics::Counter>& refused_;
    metrics::Family<metrics::Histogram>& sessionSeconds_;
    metrics::Family<metrics::Counter>& smtpMessages_;
    metrics::Family<metrics::Counter>& smtpRejects_;
    metrics::Family<metrics::Counter>& grants_;
    metrics::Family<metrics::Counter>& pop3_;
    metrics::Family<metrics::Counter>& other_;
    metrics::Family<metrics::Counter>& authResults_;
    metrics::Family<metrics::Histogram>& authSeconds_;
};

}  // namespace postern::app
