#include "metrics/MetricsRegistry.h"

#include <Poco/Exception.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>

namespace postern::metrics {

// ---------------------------------------------------------------------------------------
// Text format helpers
// ---------------------------------------------------------------------------------------

std::string escapeHelp(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string escapeLabelValue(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string formatValue(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

namespace {

bool isNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool isNameChar(char c) { return isNameStart(c) || (c >= '0' && c <= '9'); }

void validateMetricName(const std::string& name) {
    bool ok = !name.empty() && (isNameStart(name[0]) || name[0] == ':');
    for (char c : name) ok = ok && (isNameChar(c) || c == ':');
    if (!ok) throw Poco::InvalidArgumentException("bad metric name", name);
}

void validateLabelNames(const std::string& metric, const std::vector<std::string>& labels, bool histogram) {
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const std::string& l = labels[i];
        bool ok = !l.empty() && isNameStart(l[0]) && l.rfind("__", 0) != 0;
        for (char c : l) ok = ok && isNameChar(c);
        // "le" is the bucket label of histograms.
        if (histogram && l == "le") ok = false;
        if (!ok) throw Poco::InvalidArgumentException("bad label name for " + metric, l);
        if (std::find(labels.begin(), labels.begin() + static_cast<std::ptrdiff_t>(i), l) != labels.begin() + static_cast<std::ptrdiff_t>(i))
            throw Poco::InvalidArgumentException("duplicate label name for " + metric, l);
    }
}

// {a="x",b="y"} plus an optional extra pair (le for buckets); empty when no pairs.
std::string labelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      std::string_view extraName = {}, std::string_view extraValue = {}) {
    if (names.empty() && extraName.empty()) return {};
    std::string s = "{";
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i) s += ',';
        s += names[i];
        s += "=\"";
        s += escapeLabelValue(values[i]);
        s += '"';
    }
    if (!extraName.empty()) {
        if (!names.empty()) s += ',';
        s += extraName;
        s += "=\"";
        s += extraValue;
        s += '"';
    }
    s += '}';
    return s;
}

void appendSample(std::string& out, std::string_view name, const std::string& labels, std::string_view value) {
    out += name;
    out += labels;
    out += ' ';
    out += value;
    out += '\n';
}

void renderOne(std::string& out, const FamilyBase& f, const std::vector<std::string>& values, const Counter& c) {
    appendSample(out, f.name(), labelText(f.labelNames(), values), std::to_string(c.value()));
}

void renderOne(std::string& out, const FamilyBase& f, const std::vector<std::string>& values, const Gauge& g) {
    appendSample(out, f.name(), labelText(f.labelNames(), values), formatValue(g.value()));
}

void renderOne(std::string& out, const FamilyBase& f, const std::vector<std::string>& values, const Histogram& h) {
    const Histogram::Snapshot s = h.snapshot();
    const std::string bucket = f.name() + "_bucket";
    for (std::size_t i = 0; i < h.bounds().size(); ++i)
        appendSample(out, bucket, labelText(f.labelNames(), values, "le", formatValue(h.bounds()[i])),
                     std::to_string(s.cumulative[i]));
    appendSample(out, bucket, labelText(f.labelNames(), values, "le", "+Inf"), std::to_string(s.count));
    const std::string plain = labelText(f.labelNames(), values);
    appendSample(out, f.name() + "_sum", plain, formatValue(s.sum));
    appendSample(out, f.name() + "_count", plain, std::to_string(s.count));
}

// A gauge whose value is read when rendering.
class CallbackGauge final : public FamilyBase {
public:
    CallbackGauge(std::string name, std::string help, std::function<double()> read)
        : FamilyBase(std::move(name), std::move(help), {}), read_(std::move(read)) {}
    std::string_view type() const override { return "gauge"; }
    void renderSamples(std::string& out) const override {
        double v = 0;
        try {
            v = read_();
        } catch (...) {
            return;  // no sample rather than a made-up one
        }
        appendSample(out, name(), {}, formatValue(v));
    }

private:
    std::function<double()> read_;
};

// Gauges with labels whose series are all read when rendering.
class CallbackGaugeFamily final : public FamilyBase {
public:
    CallbackGaugeFamily(std::string name, std::string help, std::vector<std::string> labelNames,
                        Registry::LabeledRead read)
        : FamilyBase(std::move(name), std::move(help), std::move(labelNames)), read_(std::move(read)) {}
    std::string_view type() const override { return "gauge"; }
    void renderSamples(std::string& out) const override {
        std::vector<LabeledValue> values;
        try {
            values = read_();
        } catch (...) {
            return;  // no samples rather than made-up ones
        }
        for (const auto& v : values) {
            if (v.labels.size() != labelNames().size()) continue;  // a bad series is left out
            appendSample(out, name(), labelText(labelNames(), v.labels), formatValue(v.value));
        }
    }

private:
    Registry::LabeledRead read_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------------------

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        if (!std::isfinite(bounds_[i])) throw Poco::InvalidArgumentException("histogram bound not finite");
        if (i > 0 && !(bounds_[i - 1] < bounds_[i]))
            throw Poco::InvalidArgumentException("histogram bounds not strictly increasing");
    }
    counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) noexcept {
    if (std::isnan(value)) return;
    // "le": the first bucket whose upper bound is >= value.
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
    counts_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
    Snapshot s;
    s.cumulative.resize(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += counts_[i].load(std::memory_order_relaxed);
        s.cumulative[i] = running;
    }
    // Count is derived from the buckets so +Inf always equals _count.
    s.count = running;
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
}

std::vector<double> defaultLatencyBuckets() { return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}; }

// ---------------------------------------------------------------------------------------
// Family
// ---------------------------------------------------------------------------------------

template <typename Metric>
Metric& Family<Metric>::labels(const std::vector<std::string>& values) {
    if (values.size() != labelNames().size())
        throw Poco::InvalidArgumentException("wrong number of label values for " + name());
    {
        std::shared_lock lock(mutex_);
        auto it = series_.find(values);
        if (it != series_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    auto& slot = series_[values];
    if (!slot) slot = make_();
    return *slot;
}

template <typename Metric>
void Family<Metric>::renderSamples(std::string& out) const {
    std::shared_lock lock(mutex_);
    for (const auto& [values, metric] : series_) renderOne(out, *this, values, *metric);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

template <typename Metric>
Family<Metric>& Registry::family(const std::string& name, const std::string& help, std::vector<std::string> labelNames,
                                 std::string_view type, std::vector<double> bounds) {
    validateMetricName(name);
    validateLabelNames(name, labelNames, type == "histogram");
    std::lock_guard lock(mutex_);
    if (auto it = byName_.find(name); it != byName_.end()) {
        auto* existing = dynamic_cast<Family<Metric>*>(it->second);
        bool same = existing && existing->labelNames() == labelNames;
        if (same && type == "histogram") same = histogramBounds_[name] == bounds;
        if (!same) throw Poco::InvalidArgumentException("metric registered twice with different type or labels", name);
        return *existing;
    }
    typename Family<Metric>::Factory make;
    if constexpr (std::is_same_v<Metric, Histogram>) {
        Histogram probe(bounds);  // validates the bounds once, at registration
        make = [bounds] { return std::make_unique<Histogram>(bounds); };
        histogramBounds_[name] = bounds;
    } else {
        make = [] { return std::make_unique<Metric>(); };
    }
    auto f = std::make_unique<Family<Metric>>(name, help, std::move(labelNames), type, std::move(make));
    auto& ref = *f;
    byName_[name] = f.get();
    families_.push_back(std::move(f));
    return ref;
}

Counter& Registry::counter(const std::string& name, const std::string& help) {
    return family<Counter>(name, help, {}, "counter", {}).labels(std::vector<std::string>{});
}

Family<Counter>& Registry::counterFamily(const std::string& name, const std::string& help,
                                         std::vector<std::string> labelNames) {
    return family<Counter>(name, help, std::move(labelNames), "counter", {});
}

Gauge& Registry::gauge(const std::string& name, const std::string& help) {
    return family<Gauge>(name, help, {}, "gauge", {}).labels(std::vector<std::string>{});
}

Family<Gauge>& Registry::gaugeFamily(const std::string& name, const std::string& help, std::vector<std::string> labelNames) {
    return family<Gauge>(name, help, std::move(labelNames), "gauge", {});
}

void Registry::gaugeCallback(const std::string& name, const std::string& help, std::function<double()> read) {
    validateMetricName(name);
    if (!read) throw Poco::InvalidArgumentException("empty gauge callback", name);
    std::lock_guard lock(mutex_);
    // Two callbacks for one name would be ambiguous: which one is the truth?
    if (byName_.count(name)) throw Poco::InvalidArgumentException("metric registered twice", name);
    auto f = std::make_unique<CallbackGauge>(name, help, std::move(read));
    byName_[name] = f.get();
    families_.push_back(std::move(f));
}

void Registry::gaugeFamilyCallback(const std::string& name, const std::string& help,
                                   std::vector<std::string> labelNames, LabeledRead read) {
    validateMetricName(name);
    validateLabelNames(name, labelNames, false);
    if (!read) throw Poco::InvalidArgumentException("empty gauge callback", name);
    std::lock_guard lock(mutex_);
    if (byName_.count(name)) throw Poco::InvalidArgumentException("metric registered twice", name);
    auto f = std::make_unique<CallbackGaugeFamily>(name, help, std::move(labelNames), std::move(read));
    byName_[name] = f.get();
    families_.push_back(std::move(f));
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
    return family<Histogram>(name, help, {}, "histogram", std::move(bounds)).labels(std::vector<std::string>{});
}

Family<Histogram>& Registry::histogramFamily(const std::string& name, const std::string& help,
                                             std::vector<std::string> labelNames, std::vector<double> bounds) {
    return family<Histogram>(name, help, std::move(labelNames), "histogram", std::move(bounds));
}

std::string Registry::render() const {
    std::vector<const FamilyBase*> families;
    {
        std::lock_guard lock(mutex_);
        families.reserve(families_.size());
        for (const auto& f : families_) families.push_back(f.get());
    }
    // Families are never removed, so rendering outside the registry lock is safe and
    // does not hold up registration while callbacks run.
    std::string out;
    for (const FamilyBase* f : families) {
        out += "# HELP ";
        out += f->name();
        out += ' ';
        out += escapeHelp(f->help());
        out += "\n# TYPE ";
        out += f->name();
        out += ' ';
        out += f->type();
        out += '\n';
        f->renderSamples(out);
    }
    return out;
}

}  // namespace postern::metrics
