// Outbound rate limits: hourly/daily windows per user and per address, all-or-nothing
// counting, per-user overrides, allow-lists, sliding expiry with a fake clock, and exact
// limits under threads hammering one user.
#include "abuse/MemoryRateStore.h"
#include "abuse/RateLimiter.h"
#include "AbuseTestSupport.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <ostream>
#include <thread>
#include <vector>

using namespace postern::abuse;
using postern::abuse::test::addr;
using postern::abuse::test::FakeClock;
using postern::abuse::test::rateTestLimits;
using postern::abuse::test::rateTestSettings;
using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;
using Kind = RateVerdict::Kind;

namespace {

struct Fixture {
    FakeClock clock;
    RateLimiterSettings settings = rateTestSettings();
    RateLimiter make() { return RateLimiter(settings, nullptr, clock.fn()); }
};

class BrokenStore : public RateStore {
public:
    RateStoreResult tryAdd(const std::vector<RateRequest>&, postern::core::TimePoint) override { return {}; }
    std::optional<RateCounts> get(const std::string&, postern::core::TimePoint) override { return std::nullopt; }
};

// Which counter is exhausted first with tight limits, and the verdict's labels.
struct LimitCase {
    std::string name;
    RateLimits user;
    RateLimits ip;
    bool authenticated;
    bool messages;            // tryAddMessage, else tryAddRecipients(1)
    unsigned allowedBeforeLimit;
    std::string limitedBy;
    std::string limit;
};
std::ostream& operator<<(std::ostream& o, const LimitCase& c) { return o << c.name; }

const LimitCase limitCases[] = {
    {"user messages/hour", {3, 100, 100, 100}, {100, 100, 100, 100}, true, true, 3, "user", "messages_per_hour"},
    {"user messages/day", {100, 100, 2, 100}, {100, 100, 100, 100}, true, true, 2, "user", "messages_per_day"},
    {"user recipients/hour", {100, 4, 100, 100}, {100, 100, 100, 100}, true, false, 4, "user", "recipients_per_hour"},
    {"user recipients/day", {100, 100, 100, 5}, {100, 100, 100, 100}, true, false, 5, "user", "recipients_per_day"},
    {"ip messages/hour", {100, 100, 100, 100}, {2, 100, 100, 100}, true, true, 2, "ip", "messages_per_hour"},
    {"ip recipients/day", {100, 100, 100, 100}, {100, 100, 100, 3}, true, false, 3, "ip", "recipients_per_day"},
    {"unauthenticated: ip only", {1, 1, 1, 1}, {4, 100, 100, 100}, false, true, 4, "ip", "messages_per_hour"},
    {"zero means no limit", {0, 0, 0, 0}, {0, 0, 0, 6}, true, false, 6, "ip", "recipients_per_day"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(rate_limiter)

BOOST_DATA_TEST_CASE(first_exhausted_limit_refuses, bdata::make(limitCases), c) {
    Fixture f;
    f.settings.user = c.user;
    f.settings.ip = c.ip;
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    const std::string user = c.authenticated ? "bob@example.test" : "";
    auto attempt = [&] { return c.messages ? r.tryAddMessage(ip, user) : r.tryAddRecipients(ip, user, 1); };
    for (unsigned i = 0; i < c.allowedBeforeLimit; ++i)
        BOOST_TEST(attempt().isAllowed());
    RateVerdict v = attempt();
    BOOST_TEST(static_cast<int>(v.kind) == static_cast<int>(Kind::Limited));
    BOOST_TEST(v.limitedBy == c.limitedBy);
    BOOST_TEST(v.limit == c.limit);
}

// The limits' one default lives in the key table (limits.*): the struct carries none.
BOOST_AUTO_TEST_CASE(no_second_defaults) {
    BOOST_TEST((RateLimiterSettings{} == RateLimiterSettings{RateLimits{0, 0, 0, 0}, RateLimits{0, 0, 0, 0}, "", 0}));
}

BOOST_AUTO_TEST_CASE(hourly_limit_slides) {
    Fixture f;
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    for (int i = 0; i < 200; ++i)
        BOOST_REQUIRE(r.tryAddMessage(ip, "bob@example.test").isAllowed());
    BOOST_TEST(!r.tryAddMessage(ip, "bob@example.test").isAllowed());
    f.clock.advance(59min);
    BOOST_TEST(!r.tryAddMessage(ip, "bob@example.test").isAllowed());
    // Refused attempts were not counted: once the hour (plus at most a bucket) has
    // passed, the full allowance is back.
    f.clock.advance(6min);
    for (int i = 0; i < 200; ++i)
        BOOST_REQUIRE(r.tryAddMessage(ip, "bob@example.test").isAllowed());
    BOOST_TEST(!r.tryAddMessage(ip, "bob@example.test").isAllowed());
}

BOOST_AUTO_TEST_CASE(daily_limit_across_hours) {
    Fixture f;
    f.settings.ip = RateLimits{0, 0, 0, 0};
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    // 200 an hour for five hours reaches the 1000/day limit without touching the hourly one.
    for (int h = 0; h < 5; ++h) {
        for (int i = 0; i < 200; ++i)
            BOOST_REQUIRE(r.tryAddMessage(ip, "bob@example.test").isAllowed());
        f.clock.advance(66min);
    }
    RateVerdict v = r.tryAddMessage(ip, "bob@example.test");
    BOOST_TEST(v.limit == "messages_per_day");
    f.clock.advance(24h);
    BOOST_TEST(r.tryAddMessage(ip, "bob@example.test").isAllowed());
}

BOOST_AUTO_TEST_CASE(all_or_nothing_between_user_and_ip) {
    Fixture f;
    f.settings.ip.messagesPerHour = 2;
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    BOOST_TEST(r.tryAddMessage(ip, "alice@example.test").isAllowed());
    BOOST_TEST(r.tryAddMessage(ip, "alice@example.test").isAllowed());
    RateVerdict v = r.tryAddMessage(ip, "alice@example.test");
    BOOST_TEST(v.limitedBy == "ip");
    // The refused message did not count against alice.
    auto counts = r.store().get(r.userKey("msg", "alice@example.test"), f.clock.now());
    BOOST_REQUIRE(counts);
    BOOST_TEST(counts->lastHour == 2u);
    // Alice from elsewhere is fine; the address stays limited for everyone.
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.8"), "alice@example.test").isAllowed());
    BOOST_TEST(!r.tryAddMessage(ip, "carol@example.test").isAllowed());
}

BOOST_AUTO_TEST_CASE(messages_and_recipients_are_separate_counters) {
    Fixture f;
    f.settings.user = RateLimits{1, 3, 0, 0};
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    BOOST_TEST(r.tryAddRecipients(ip, "bob", 3).isAllowed());
    BOOST_TEST(r.tryAddMessage(ip, "bob").isAllowed());
    BOOST_TEST(r.tryAddRecipients(ip, "bob", 1).limit == "recipients_per_hour");
    BOOST_TEST(r.tryAddMessage(ip, "bob").limit == "messages_per_hour");
}

BOOST_AUTO_TEST_CASE(batch_larger_than_remaining_is_refused_whole) {
    Fixture f;
    f.settings.user.recipientsPerHour = 10;
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    BOOST_TEST(r.tryAddRecipients(ip, "bob", 7).isAllowed());
    BOOST_TEST(!r.tryAddRecipients(ip, "bob", 4).isAllowed());
    BOOST_TEST(r.tryAddRecipients(ip, "bob", 3).isAllowed());
    BOOST_TEST(!r.tryAddRecipients(addr("192.0.2.9"), "carol", 11).isAllowed());
    BOOST_TEST(r.tryAddRecipients(ip, "bob", 0).isAllowed());
}

BOOST_AUTO_TEST_CASE(per_user_override) {
    Fixture f;
    RateLimiter r = f.make();
    const auto ip = addr("192.0.2.7");
    RateLimits newsletter{0, 0, 0, 0};  // a trusted bulk sender: no user limits
    newsletter.messagesPerHour = 500;
    RateLimiter unlimitedIp(RateLimiterSettings{rateTestLimits(), RateLimits{0, 0, 0, 0}, "", 64}, nullptr, f.clock.fn());
    for (int i = 0; i < 500; ++i)
        BOOST_REQUIRE(unlimitedIp.tryAddMessage(ip, "news@example.test", newsletter).isAllowed());
    BOOST_TEST(unlimitedIp.tryAddMessage(ip, "news@example.test", newsletter).limit == "messages_per_hour");
    // Without the override the same counter is already over the test limit of 200.
    BOOST_TEST(!unlimitedIp.tryAddMessage(ip, "news@example.test").isAllowed());
    // A tighter override for a suspicious account.
    RateLimits tight{1, 1, 1, 1};
    BOOST_TEST(r.tryAddMessage(ip, "suspect@example.test", tight).isAllowed());
    BOOST_TEST(!r.tryAddMessage(ip, "suspect@example.test", tight).isAllowed());
}

BOOST_AUTO_TEST_CASE(users_compared_case_insensitively) {
    Fixture f;
    f.settings.user.messagesPerHour = 1;
    RateLimiter r = f.make();
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.1"), "Bob@Example.test").isAllowed());
    BOOST_TEST(!r.tryAddMessage(addr("192.0.2.2"), "bob@example.TEST").isAllowed());
}

BOOST_AUTO_TEST_CASE(allow_list_skips_ip_limits_not_user_limits) {
    Fixture f;
    f.settings.allowNetworks = "192.0.2.0/24, 2001:db8:cafe::/48";
    f.settings.ip.messagesPerHour = 1;
    f.settings.user.messagesPerHour = 3;
    RateLimiter r = f.make();
    for (const char* a : {"192.0.2.7", "2001:db8:cafe:1::9"}) {
        BOOST_TEST(r.tryAddMessage(addr(a), "").isAllowed());
        BOOST_TEST(r.tryAddMessage(addr(a), "").isAllowed());  // ip limit 1 not applied
    }
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob").limitedBy == "user");
    // Outside the list the ip limit applies.
    BOOST_TEST(r.tryAddMessage(addr("203.0.113.1"), "").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("203.0.113.1"), "").limitedBy == "ip");
}

BOOST_AUTO_TEST_CASE(ipv6_clients_share_their_prefix) {
    Fixture f;
    f.settings.ip.messagesPerHour = 2;
    RateLimiter r = f.make();
    BOOST_TEST(r.tryAddMessage(addr("2001:db8:1:2::1"), "").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("2001:db8:1:2::2"), "").isAllowed());
    BOOST_TEST(!r.tryAddMessage(addr("2001:db8:1:2:abcd::3"), "").isAllowed());
    BOOST_TEST(r.tryAddMessage(addr("2001:db8:1:3::1"), "").isAllowed());
    BOOST_TEST(r.ipKey("msg", addr("2001:db8:1:2::1")) == "msg:ip:2001:db8:1:2::/64");
}

BOOST_AUTO_TEST_CASE(store_failure_is_tempfail) {
    FakeClock clock;
    RateLimiter r(rateTestSettings(), std::make_unique<BrokenStore>(), clock.fn());
    RateVerdict v = r.tryAddMessage(addr("192.0.2.7"), "bob");
    BOOST_TEST(static_cast<int>(v.kind) == static_cast<int>(Kind::TempFail));
    BOOST_TEST(!RateVerdict{}.isAllowed());
}

// A counter without a limit is never asked for (the shipped limits.ip.* are 0: in a cluster
// every sender behind one CGNAT address waited on one lock and one row for nothing).
BOOST_AUTO_TEST_CASE(counters_without_a_limit_are_not_kept) {
    struct Recording : RateStore {
        std::vector<std::string> keys;
        RateStoreResult tryAdd(const std::vector<RateRequest>& rs, postern::core::TimePoint) override {
            for (const auto& r : rs) keys.push_back(r.key);
            RateStoreResult ok;
            ok.kind = RateStoreResult::Kind::Added;
            return ok;
        }
        std::optional<RateCounts> get(const std::string&, postern::core::TimePoint) override { return std::nullopt; }
    };
    FakeClock clock;
    RateLimiterSettings s = rateTestSettings();
    s.ip = RateLimits{};  // all 0, as shipped
    auto store = std::make_unique<Recording>();
    Recording* seen = store.get();
    RateLimiter r(s, std::move(store), clock.fn());
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob").isAllowed());
    BOOST_TEST(r.tryAddRecipients(addr("192.0.2.7"), "", 3).isAllowed());  // nothing to count at all
    BOOST_TEST(r.tryAddMessage(addr("192.0.2.7"), "bob", RateLimits{}).isAllowed());  // an unlimited user
    BOOST_TEST(seen->keys.size() == 1u);
    BOOST_TEST(seen->keys.at(0).find("ip") == std::string::npos, seen->keys.at(0));
}

BOOST_AUTO_TEST_CASE(store_same_key_twice_adds_up) {
    FakeClock clock;
    MemoryRateStore store;
    std::vector<RateRequest> req{{"k", 3, 5, 0}, {"k", 3, 5, 0}};
    RateStoreResult res = store.tryAdd(req, clock.now());
    BOOST_TEST(static_cast<int>(res.kind) == static_cast<int>(RateStoreResult::Kind::Limited));
    BOOST_TEST(res.index == 1u);
    BOOST_TEST(store.get("k", clock.now())->lastHour == 0u);
}

BOOST_AUTO_TEST_CASE(store_sweeps_idle_counters) {
    FakeClock clock;
    MemoryRateStore store;
    for (int i = 0; i < 50; ++i)
        store.tryAdd({{"k" + std::to_string(i), 1, 10, 10}}, clock.now());
    BOOST_TEST(store.size() == 50u);
    BOOST_TEST(store.sweep(clock.now() + 23h) == 0u);
    BOOST_TEST(store.sweep(clock.now() + 25h) == 50u);
    BOOST_TEST(store.size() == 0u);
}

BOOST_AUTO_TEST_CASE(concurrent_hammering_admits_exactly_the_limit) {
    FakeClock clock;
    RateLimiterSettings s = rateTestSettings();
    s.user.messagesPerHour = 1000;
    s.ip = RateLimits{0, 0, 0, 0};
    s.ip.recipientsPerHour = 3000;
    RateLimiter r(s, nullptr, clock.fn());
    constexpr int Threads = 8;
    std::atomic<int> messages{0}, recipients{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t) {
        threads.emplace_back([&, t] {
            // Same user from several addresses; recipients from one shared address.
            auto ip = addr("192.0.2." + std::to_string(t % 2 + 1));
            for (int i = 0; i < 400; ++i) {
                if (r.tryAddMessage(ip, "hammer@example.test").isAllowed())
                    messages++;
                if (r.tryAddRecipients(addr("198.51.100.1"), "", 2).isAllowed())
                    recipients += 2;
                // Unrelated users keep the other shards busy.
                r.tryAddMessage(ip, "u" + std::to_string(t * 1000 + i) + "@example.test");
            }
        });
    }
    for (auto& th : threads)
        th.join();
    BOOST_TEST(messages.load() == 1000);
    BOOST_TEST(recipients.load() == 3000);
    BOOST_TEST(r.store().get(r.userKey("msg", "hammer@example.test"), clock.now())->lastHour == 1000u);
}

BOOST_AUTO_TEST_SUITE_END()
