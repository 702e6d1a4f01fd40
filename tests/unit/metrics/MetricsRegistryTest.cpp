// Metrics registry: text format 0.0.4 rendering (HELP/TYPE, labels, escaping, number
// forms), histogram buckets, registration rules, and increments from many threads.
#include "metrics/MetricsRegistry.h"

#include <Poco/Exception.h>

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

using namespace postern::metrics;
namespace bdata = boost::unit_test::data;
using namespace std::chrono_literals;

namespace {

struct EscapeCase {
    std::string name;
    std::string input;
    std::string labelValue;  // escapeLabelValue
    std::string help;        // escapeHelp
};
std::ostream& operator<<(std::ostream& o, const EscapeCase& c) { return o << c.name; }

const EscapeCase escapeCases[] = {
    {"plain", "smtp", "smtp", "smtp"},
    {"empty", "", "", ""},
    {"backslash", "a\\b", "a\\\\b", "a\\\\b"},
    {"double quote", "say \"hi\"", "say \\\"hi\\\"", "say \"hi\""},  // HELP keeps quotes
    {"line feed", "a\nb", "a\\nb", "a\\nb"},
    {"all three", "\\\"\n", "\\\\\\\"\\n", "\\\\\"\\n"},
    {"utf-8 kept", "m\xC3\xBCller", "m\xC3\xBCller", "m\xC3\xBCller"},
    {"tab and CR kept", "a\tb\rc", "a\tb\rc", "a\tb\rc"},
};

struct ValueCase {
    double value;
    std::string text;
};
std::ostream& operator<<(std::ostream& o, const ValueCase& c) { return o << c.text; }

const ValueCase valueCases[] = {
    {0, "0"},
    {1, "1"},
    {2.5, "2.5"},
    {0.005, "0.005"},
    {-3, "-3"},
    {1e-05, "1e-05"},
    {123456789, "123456789"},
    {std::numeric_limits<double>::infinity(), "+Inf"},
    {-std::numeric_limits<double>::infinity(), "-Inf"},
    {std::numeric_limits<double>::quiet_NaN(), "NaN"},
};

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_SUITE(metrics_registry)

BOOST_DATA_TEST_CASE(escaping, bdata::make(escapeCases), c) {
    BOOST_TEST(escapeLabelValue(c.input) == c.labelValue);
    BOOST_TEST(escapeHelp(c.input) == c.help);
}

BOOST_DATA_TEST_CASE(numberForms, bdata::make(valueCases), c) { BOOST_TEST(formatValue(c.value) == c.text); }

BOOST_AUTO_TEST_CASE(rendersCountersAndGauges) {
    Registry r;
    Counter& c = r.counter("postern_smtp_connections_total", "Accepted SMTP connections.");
    c.inc();
    c.inc(4);
    auto& results = r.counterFamily("postern_auth_results_total", "Authentication results.", {"backend", "result"});
    results.labels({"ldap", "ok"}).inc(3);
    results.labels({"ldap", "tempfail"}).inc();
    Gauge& g = r.gauge("postern_queue_messages", "Messages in the outbound queue.");
    g.set(7);
    g.add(0.5);
    g.sub(2);

    const std::string expected =
        "# HELP postern_smtp_connections_total Accepted SMTP connections.\n"
        "# TYPE postern_smtp_connections_total counter\n"
        "postern_smtp_connections_total 5\n"
        "# HELP postern_auth_results_total Authentication results.\n"
        "# TYPE postern_auth_results_total counter\n"
        "postern_auth_results_total{backend=\"ldap\",result=\"ok\"} 3\n"
        "postern_auth_results_total{backend=\"ldap\",result=\"tempfail\"} 1\n"
        "# HELP postern_queue_messages Messages in the outbound queue.\n"
        "# TYPE postern_queue_messages gauge\n"
        "postern_queue_messages 5.5\n";
    BOOST_TEST(r.render() == expected);
}

BOOST_AUTO_TEST_CASE(unusedLabelledFamilyHasOnlyHelpAndType) {
    Registry r;
    r.counterFamily("postern_pop3_logins_total", "POP3 logins.", {"result"});
    BOOST_TEST(r.render() ==
               "# HELP postern_pop3_logins_total POP3 logins.\n# TYPE postern_pop3_logins_total counter\n");
}

BOOST_AUTO_TEST_CASE(labelValuesAndHelpAreEscapedInOutput) {
    Registry r;
    r.counterFamily("postern_test_total", "Line one\nback\\slash", {"v"}).labels({"a\"b\\c\nd"}).inc();
    const std::string out = r.render();
    BOOST_TEST(contains(out, "# HELP postern_test_total Line one\\nback\\\\slash\n"));
    BOOST_TEST(contains(out, "postern_test_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

BOOST_AUTO_TEST_CASE(histogramBuckets) {
    Registry r;
    Histogram& h = r.histogram("postern_smtp_data_duration_seconds", "Time to receive DATA.", {0.1, 0.5, 1});
    for (double v : {0.05, 0.1, 0.2, 0.5, 0.7, 3.0}) h.observe(v);
    h.observe(std::numeric_limits<double>::quiet_NaN());  // ignored
    h.observe(250ms);                                      // 0.25 s

    const std::string expected =
        "# HELP postern_smtp_data_duration_seconds Time to receive DATA.\n"
        "# TYPE postern_smtp_data_duration_seconds histogram\n"
        "postern_smtp_data_duration_seconds_bucket{le=\"0.1\"} 2\n"   // 0.05, 0.1 (le: <=)
        "postern_smtp_data_duration_seconds_bucket{le=\"0.5\"} 5\n"   // + 0.2, 0.25, 0.5
        "postern_smtp_data_duration_seconds_bucket{le=\"1\"} 6\n"     // + 0.7
        "postern_smtp_data_duration_seconds_bucket{le=\"+Inf\"} 7\n"  // + 3.0
        "postern_smtp_data_duration_seconds_sum 4.8\n"
        "postern_smtp_data_duration_seconds_count 7\n";
    BOOST_TEST(r.render() == expected);

    const auto s = h.snapshot();
    BOOST_TEST(s.count == 7u);
    BOOST_TEST(std::abs(s.sum - 4.8) < 1e-9);
}

BOOST_AUTO_TEST_CASE(labelledHistogramPutsLeLast) {
    Registry r;
    auto& f = r.histogramFamily("postern_auth_lookup_duration_seconds", "Backend lookup time.", {"backend"}, {0.01});
    f.labels({"ldap"}).observe(0.001);
    const std::string out = r.render();
    BOOST_TEST(contains(out, "postern_auth_lookup_duration_seconds_bucket{backend=\"ldap\",le=\"0.01\"} 1\n"));
    BOOST_TEST(contains(out, "postern_auth_lookup_duration_seconds_bucket{backend=\"ldap\",le=\"+Inf\"} 1\n"));
    BOOST_TEST(contains(out, "postern_auth_lookup_duration_seconds_count{backend=\"ldap\"} 1\n"));
}

BOOST_AUTO_TEST_CASE(defaultLatencyBucketsAreUsable) {
    Histogram h(defaultLatencyBuckets());
    BOOST_TEST(h.bounds().size() == 11u);
    h.observe(20.0);
    BOOST_TEST(h.snapshot().cumulative.back() == 1u);
    BOOST_TEST(h.snapshot().cumulative[10] == 0u);
}

BOOST_AUTO_TEST_CASE(callbackGauge) {
    Registry r;
    int sessions = 3;
    r.gaugeCallback("postern_sessions_active", "Sessions in progress.", [&] { return static_cast<double>(sessions); });
    r.gaugeCallback("postern_broken", "Throws.", []() -> double { throw std::runtime_error("x"); });
    BOOST_TEST(contains(r.render(), "postern_sessions_active 3\n"));
    sessions = 4;
    const std::string out = r.render();
    BOOST_TEST(contains(out, "postern_sessions_active 4\n"));
    BOOST_TEST(contains(out, "# TYPE postern_broken gauge\n"));
    BOOST_TEST(!contains(out, "postern_broken 0"));
}

BOOST_AUTO_TEST_CASE(callbackGaugeFamiliesAreReadAtRenderTime) {
    Registry r;
    double ldap = 1;
    r.gaugeFamilyCallback("postern_backend_up", "Backend answers.", {"backend"}, [&] {
        return std::vector<LabeledValue>{{{"local"}, 1}, {{"ldap1"}, ldap}, {{"too", "many"}, 5}};
    });
    r.gaugeFamilyCallback("postern_broken_family", "Throws.", {"b"},
                          []() -> std::vector<LabeledValue> { throw std::runtime_error("x"); });
    BOOST_TEST(contains(r.render(), "postern_backend_up{backend=\"ldap1\"} 1\n"));
    ldap = 0;
    const std::string out = r.render();
    BOOST_TEST(contains(out, "# TYPE postern_backend_up gauge\n"));
    BOOST_TEST(contains(out, "postern_backend_up{backend=\"local\"} 1\n"));
    BOOST_TEST(contains(out, "postern_backend_up{backend=\"ldap1\"} 0\n"));
    BOOST_TEST(!contains(out, " 5\n"));  // a series with the wrong number of labels is left out
    BOOST_TEST(!contains(out, "postern_broken_family{"));
    BOOST_CHECK_THROW(r.gaugeFamilyCallback("postern_backend_up", "x", {"backend"}, [] { return std::vector<LabeledValue>{}; }),
                      Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.gaugeFamilyCallback("postern_other", "x", {"__x"}, [] { return std::vector<LabeledValue>{}; }),
                      Poco::InvalidArgumentException);
}

BOOST_AUTO_TEST_CASE(registeringAgainReturnsTheSameMetric) {
    Registry r;
    Counter& a = r.counter("postern_x_total", "x");
    Counter& b = r.counter("postern_x_total", "x");
    BOOST_TEST(&a == &b);
    auto& f1 = r.histogramFamily("postern_h_seconds", "h", {"l"}, {1, 2});
    auto& f2 = r.histogramFamily("postern_h_seconds", "h", {"l"}, {1, 2});
    BOOST_TEST(&f1 == &f2);
    BOOST_TEST(&f1.labels({"v"}) == &f2.labels({"v"}));
}

BOOST_AUTO_TEST_CASE(refusesConflictsAndBadNames) {
    Registry r;
    r.counter("postern_x_total", "x");
    BOOST_CHECK_THROW(r.gauge("postern_x_total", "x"), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counterFamily("postern_x_total", "x", {"a"}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.gaugeCallback("postern_x_total", "x", [] { return 1.0; }), Poco::InvalidArgumentException);
    r.histogram("postern_h_seconds", "h", {1});
    BOOST_CHECK_THROW(r.histogram("postern_h_seconds", "h", {2}), Poco::InvalidArgumentException);

    BOOST_CHECK_THROW(r.counter("", "x"), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counter("1abc", "x"), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counter("postern-x", "x"), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counterFamily("postern_y_total", "x", {"__reserved"}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counterFamily("postern_y_total", "x", {"a:b"}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.counterFamily("postern_y_total", "x", {"a", "a"}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.histogramFamily("postern_z_seconds", "x", {"le"}, {1}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.histogram("postern_z_seconds", "x", {2, 1}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.histogram("postern_z_seconds", "x", {1, 1}), Poco::InvalidArgumentException);
    BOOST_CHECK_THROW(r.histogram("postern_z_seconds", "x", {std::numeric_limits<double>::infinity()}),
                      Poco::InvalidArgumentException);

    auto& f = r.counterFamily("postern_w_total", "w", {"a", "b"});
    BOOST_CHECK_THROW(f.labels({"only-one"}), Poco::InvalidArgumentException);
    // A failed registration leaves nothing behind.
    BOOST_TEST(!contains(r.render(), "postern_z_seconds"));
    BOOST_TEST(!contains(r.render(), "postern_y_total"));
}

BOOST_AUTO_TEST_CASE(concurrentIncrementsAreNotLost) {
    Registry r;
    auto& family = r.counterFamily("postern_c_total", "c", {"t"});
    Histogram& h = r.histogram("postern_c_seconds", "c", {0.5});
    Gauge& g = r.gauge("postern_c_gauge", "c");
    constexpr int Threads = 8;
    constexpr int PerThread = 20000;
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t) {
        threads.emplace_back([&, t] {
            Counter& mine = family.labels({t % 2 ? "odd" : "even"});  // new series race on first use
            for (int i = 0; i < PerThread; ++i) {
                mine.inc();
                h.observe(i % 2 ? 1.0 : 0.25);
                g.add(1);
            }
        });
    }
    // Rendering concurrently must be safe too.
    for (int i = 0; i < 20; ++i) (void)r.render();
    for (auto& t : threads) t.join();
    BOOST_TEST(family.labels({"odd"}).value() == std::uint64_t{Threads / 2 * PerThread});
    BOOST_TEST(family.labels({"even"}).value() == std::uint64_t{Threads / 2 * PerThread});
    const auto s = h.snapshot();
    BOOST_TEST(s.count == std::uint64_t{Threads * PerThread});
    BOOST_TEST(s.cumulative[0] == std::uint64_t{Threads * PerThread / 2});
    BOOST_TEST(s.sum == Threads * PerThread / 2 * 1.25);
    BOOST_TEST(g.value() == double{Threads * PerThread});
}

BOOST_AUTO_TEST_SUITE_END()
