// Process metrics: counters, gauges and fixed-bucket histograms, with labels, rendered in
// the Prometheus text exposition format 0.0.4. Names follow postern_<area>_<what>_<unit>
// (counters end in _total), e.g. postern_auth_results_total{backend,result}.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace postern::metrics {

// A monotonically increasing count. Lock-free; thread-safe.
class Counter {
public:
    void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down. Lock-free; thread-safe.
class Gauge {
public:
    void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
    void add(double d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
    void sub(double d) noexcept { value_.fetch_sub(d, std::memory_order_relaxed); }
    double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (upper bounds, "le"), plus their sum and count.
// Lock-free; thread-safe. A snapshot taken while others observe may be off by the
// observations in flight, never inconsistent in itself (+Inf bucket == count).
class Histogram {
public:
    // bounds: finite, strictly increasing; +Inf is implicit. Throws
    // Poco::InvalidArgumentException otherwise.
    explicit Histogram(std::vector<double> bounds);

    // NaN is ignored (it would poison the sum).
    void observe(double value) noexcept;
    // Latencies are observed in seconds.
    template <typename Rep, typename Period>
    void observe(std::chrono::duration<Rep, Period> d) noexcept {
        observe(std::chrono::duration<double>(d).count());
    }

    struct Snapshot {
        std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf (== count)
        double sum = 0;
        std::uint64_t count = 0;
    };
    Snapshot snapshot() const;
    const std::vector<double>& bounds() const { return bounds_; }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per bucket, not cumulative; last is +Inf
    std::atomic<double> sum_{0.0};
};

// Latency buckets in seconds: 5 ms .. 10 s (the Prometheus client defaults), for session
// steps, backend lookups and deliveries.
std::vector<double> defaultLatencyBuckets();

// Base of every registered metric family; rendering only.
class FamilyBase {
public:
    virtual ~FamilyBase() = default;
    const std::string& name() const { return name_; }
    const std::string& help() const { return help_; }
    const std::vector<std::string>& labelNames() const { return labelNames_; }
    virtual std::string_view type() const = 0;
    // Appends the sample lines (no HELP/TYPE) in text format 0.0.4.
    virtual void renderSamples(std::string& out) const = 0;

protected:
    FamilyBase(std::string name, std::string help, std::vector<std::string> labelNames)
        : name_(std::move(name)), help_(std::move(help)), labelNames_(std::move(labelNames)) {}

private:
    std::string name_;
    std::string help_;
    std::vector<std::string> labelNames_;
};

// All series of one metric, one per combination of label values. Thread-safe: lookups
// share a lock, a new combination takes it exclusively once. Series are never removed, so
// a returned reference stays valid as long as the registry: keep it on hot paths instead
// of looking it up per event. Label values must come from small closed sets (result,
// backend, listener), never from client input (a user name or an address would grow
// memory without bound).
template <typename Metric>
class Family final : public FamilyBase {
public:
    using Factory = std::function<std::unique_ptr<Metric>()>;

    Family(std::string name, std::string help, std::vector<std::string> labelNames, std::string_view type, Factory make)
        : FamilyBase(std::move(name), std::move(help), std::move(labelNames)), type_(type), make_(std::move(make)) {}

    // The series for these values, in labelNames() order. Throws
    // Poco::InvalidArgumentException if the number of values is wrong.
    Metric& labels(const std::vector<std::string>& values);
    Metric& labels(std::initializer_list<std::string_view> values) {
        return labels(std::vector<std::string>(values.begin(), values.end()));
    }

    std::string_view type() const override { return type_; }
    void renderSamples(std::string& out) const override;

private:
    std::string_view type_;
    Factory make_;
    mutable std::shared_mutex mutex_;
    std::map<std::vector<std::string>, std::unique_ptr<Metric>> series_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// One series of a callback gauge family: label values and the value.
struct LabeledValue {
    std::vector<std::string> labels;
    double value = 0;
};

// The metrics of one process. Registration is rare (start-up) and takes a mutex;
// updates go straight to the returned metric's atomics. Thread-safe.
//
// Registering a name again with the same type, labels (and buckets) returns the existing
// metric, so two listeners may both ask for it; anything else under a taken name, or a
// name that is not [a-zA-Z_:][a-zA-Z0-9_:]* (labels [a-zA-Z_][a-zA-Z0-9_]*, no "__"
// prefix, no "le" on histograms), throws Poco::InvalidArgumentException.
class Registry {
public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    Counter& counter(const std::string& name, const std::string& help);
    Family<Counter>& counterFamily(const std::string& name, const std::string& help, std::vector<std::string> labelNames);

    Gauge& gauge(const std::string& name, const std::string& help);
    Family<Gauge>& gaugeFamily(const std::string& name, const std::string& help, std::vector<std::string> labelNames);
    // A gauge read at render time, e.g. active sessions from the connection registry. The
    // callback runs on the thread that renders (the health server's), must be thread-safe
    // and quick, and what it captures must outlive every render (stop the HealthServer
    // first). A throwing callback's sample is left out.
    void gaugeCallback(const std::string& name, const std::string& help, std::function<double()> read);
    // The same with labels: read() returns every series (label values in labelNames order)
    // at render time, e.g. postern_backend_up{backend} from the backends' readiness probes.
    // A series with the wrong number of values is left out; a throwing read() leaves out all.
    using LabeledRead = std::function<std::vector<LabeledValue>()>;
    void gaugeFamilyCallback(const std::string& name, const std::string& help, std::vector<std::string> labelNames,
                             LabeledRead read);

    Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds);
    Family<Histogram>& histogramFamily(const std::string& name, const std::string& help,
                                       std::vector<std::string> labelNames, std::vector<double> bounds);

    // Every family in registration order: "# HELP", "# TYPE", then its samples.
    std::string render() const;

private:
    template <typename Metric>
    Family<Metric>& family(const std::string& name, const std::string& help, std::vector<std::string> labelNames,
                           std::string_view type, std::vector<double> bounds);

    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<FamilyBase>> families_;
    std::map<std::string, FamilyBase*, std::less<>> byName_;
    std::map<std::string, std::vector<double>, std::less<>> histogramBounds_;
};

// Text format 0.0.4 helpers, exposed for tests and for other renderers.
// HELP text: backslash and line feed escaped.
std::string escapeHelp(std::string_view text);
// Label value: backslash, double quote and line feed escaped.
std::string escapeLabelValue(std::string_view value);
// Shortest round-trip form; "+Inf", "-Inf", "NaN" as the format spells them.
std::string formatValue(double v);

}  // namespace postern::metrics
