// Shared counter stores falling back to this node's memory while the primary (PostgreSQL)
// cannot answer, and using the primary again when it can.
#include "abuse/DegradingStores.h"

#include "abuse/PenalizedAuthService.h"
#include "AbuseTestSupport.h"

#include <boost/test/unit_test.hpp>

using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {
// A primary that can be switched off: answers like the memory store, or fails.
struct FlakyPenaltyStore : PenaltyStore {
    MemoryPenaltyStore inner;
    bool down = false;
    std::optional<PenaltyCount> increment(const std::string& k, postern::core::TimePoint now, std::chrono::milliseconds w,
                                          std::uint32_t hold) override {
        if (down) return std::nullopt;
        return inner.increment(k, now, w, hold);
    }
    std::optional<PenaltyCount> get(const std::string& k, postern::core::TimePoint now) override {
        if (down) return std::nullopt;
        return inner.get(k, now);
    }
    bool reset(const std::string& k) override { return !down && inner.reset(k); }
};
struct FlakyRateStore : RateStore {
    MemoryRateStore inner;
    bool down = false;
    bool reportCounts = false;  // as PostgreSQL does since schema 009
    RateStoreResult tryAdd(const std::vector<RateRequest>& r, postern::core::TimePoint now) override {
        if (down) return {};
        RateStoreResult result = inner.tryAdd(r, now);
        if (reportCounts && result.kind == RateStoreResult::Kind::Added)
            for (const auto& q : r) {
                const RateCounts c = *inner.get(q.key, now);
                result.counts.push_back(c);
            }
        return result;
    }
    std::optional<RateCounts> get(const std::string& k, postern::core::TimePoint now) override {
        if (down) return std::nullopt;
        return inner.get(k, now);
    }
};
const postern::core::TimePoint T0 = postern::core::TimePoint(1700000000s);
}  // namespace

BOOST_AUTO_TEST_SUITE(degrading_stores)

// Review finding (cluster): a POP3 login whose penalty the caller checks in its own
// statement saw only the shared rows, so after an outage a right password logged in where
// a wrong one was refused as blocked (an oracle). Local counts now make it check here first.
BOOST_AUTO_TEST_CASE(local_counts_after_an_outage_block_a_caller_checked_login) {
    FlakyPenaltyStore primary;
    AuthPenaltySettings s = test::penaltyTestSettings();  // 10 failures per address
    AuthPenalty penalty(s, std::make_unique<DegradingPenaltyStore>(primary));
    struct Right : postern::core::AuthService {
        postern::core::AuthResult authenticate(const postern::core::AuthRequest& r) override {
            postern::core::AuthResult res;
            res.status = r.password == "right" ? postern::core::AuthStatus::Ok : postern::core::AuthStatus::BadCredentials;
            return res;
        }
    } inner;
    PenalizedAuthService svc(inner, penalty, [](std::chrono::milliseconds) {});
    postern::core::AuthRequest r;
    r.user = "bob@example.test";
    r.service = "pop3";
    r.client.ip = Poco::Net::IPAddress("192.0.2.44");
    r.penaltyCheckedByCaller = true;
    BOOST_TEST(!penalty.hasLocalCounts(r.client, r.user));
    primary.down = true;
    r.password = "wrong";
    for (int i = 0; i < 10; ++i)
        BOOST_TEST((svc.authenticate(r).status == postern::core::AuthStatus::BadCredentials));
    primary.down = false;  // back, with no shared rows for this address
    BOOST_TEST(penalty.hasLocalCounts(r.client, r.user));
    BOOST_TEST((svc.authenticate(r).status == postern::core::AuthStatus::Blocked));
    r.password = "right";
    BOOST_TEST((svc.authenticate(r).status == postern::core::AuthStatus::Blocked));
    r.client.ip = Poco::Net::IPAddress("192.0.2.45");
    BOOST_TEST(!penalty.hasLocalCounts(r.client, "carol@example.test"));
}

BOOST_AUTO_TEST_CASE(penalty_counts_locally_during_an_outage) {
    FlakyPenaltyStore primary;
    DegradingPenaltyStore store(primary);
    BOOST_TEST(store.increment("ip:a", T0, 15min)->failures == 1u);
    primary.down = true;
    // Counted locally, on top of the shared count this node knew.
    BOOST_TEST(store.increment("ip:a", T0, 15min)->failures == 2u);
    BOOST_TEST(store.increment("ip:a", T0, 15min)->failures == 3u);
    BOOST_TEST(store.get("ip:a", T0)->failures == 3u);
    primary.down = false;
    // Back: the larger of the shared and the local count (which took in the shared count
    // known when the outage began) is used, so outage failures count.
    BOOST_TEST(store.get("ip:a", T0)->failures == 3u);
    BOOST_TEST(store.increment("ip:a", T0, 15min)->failures == 2u);  // shared count goes on
}

// Review finding: a failed statement (a full pool, a slow lock: an attacker can provoke
// them) answered from this node's outage counts alone, so a block lifted and every node gave
// a fresh budget of guesses. The shared counts this node last saw still count.
BOOST_AUTO_TEST_CASE(shared_counts_seen_still_count_when_a_statement_fails) {
    FlakyPenaltyStore primary;
    DegradingPenaltyStore store(primary);
    for (int i = 0; i < 5; ++i) store.increment("user:a", T0, 15min);
    primary.inner.increment("ip:b", T0, 15min);  // counted by another node
    primary.inner.increment("ip:b", T0, 15min);
    BOOST_TEST(store.getPair("ip:b", "user:a", T0)->first.failures == 2u);  // read: now known
    primary.down = true;
    BOOST_TEST(store.get("user:a", T0 + 1s)->failures == 5u);
    auto pair = store.getPair("ip:b", "user:a", T0 + 1s);
    BOOST_TEST(pair->first.failures == 2u);
    BOOST_TEST(pair->second.failures == 5u);
    BOOST_TEST(store.increment("user:a", T0 + 2s, 15min)->failures == 6u);  // on top of the shared 5
    BOOST_TEST(store.get("user:a", T0 + 3s)->failures == 6u);
    BOOST_TEST(store.get("user:zz", T0 + 3s)->failures == 0u);
    primary.down = false;
    primary.inner.reset("ip:b");  // cleared elsewhere (a success on another node)
    BOOST_TEST(store.get("ip:b", T0 + 5s)->failures == 0u);  // learnt
    primary.down = true;
    BOOST_TEST(store.get("ip:b", T0 + 6s)->failures == 0u);
    // Known counts expire with their window, and a success here forgets them.
    BOOST_TEST(store.get("ip:b", T0 + 16min)->failures == 0u);
    store.reset("user:a");
    BOOST_TEST(store.get("user:a", T0 + 4s)->failures == 0u);
}

// Review finding: a block completed while degraded lifted when the known shared count
// expired, not a window after the failure that completed it.
BOOST_AUTO_TEST_CASE(a_block_completed_while_degraded_holds_a_window) {
    FlakyPenaltyStore primary;
    DegradingPenaltyStore store(primary);
    for (int i = 0; i < 19; ++i) store.increment("user:a", T0, 15min, 20);
    primary.down = true;
    auto c = store.increment("user:a", T0 + 14min, 15min, 20);  // the 20th: blocked
    BOOST_TEST(c->failures == 20u);
    BOOST_TEST((c->expires == T0 + 29min));
    BOOST_TEST(store.get("user:a", T0 + 16min)->failures == 20u);  // after the known count's expiry
    BOOST_TEST(store.get("user:a", T0 + 29min)->failures == 0u);
}

BOOST_AUTO_TEST_CASE(rates_limited_locally_during_an_outage) {
    FlakyRateStore primary;
    DegradingRateStore store(primary);
    primary.down = true;
    std::vector<RateRequest> one{{"rcpt:user:a", 1, 2, 0}};
    BOOST_TEST((store.tryAdd(one, T0).kind == RateStoreResult::Kind::Added));
    BOOST_TEST((store.tryAdd(one, T0).kind == RateStoreResult::Kind::Added));
    BOOST_TEST((store.tryAdd(one, T0).kind == RateStoreResult::Kind::Limited));  // limits still hold
    primary.down = false;
    BOOST_TEST((store.tryAdd(one, T0).kind == RateStoreResult::Kind::Added));  // the shared store again
}

// Review finding: during an outage (or one failed statement: a full pool) each node counted
// outbound mail from zero, a fresh hour of limits for a spammer on every node. Now it counts
// on from the shared counts the primary last reported for the key.
BOOST_AUTO_TEST_CASE(rates_count_on_from_the_shared_counts_last_seen) {
    FlakyRateStore primary;
    primary.reportCounts = true;
    DegradingRateStore store(primary);
    const std::vector<RateRequest> msg{{"msg:user:a", 1, 10, 12}, {"msg:ip:192.0.2.7", 1, 0, 0}};
    for (int i = 0; i < 8; ++i)
        BOOST_TEST((store.tryAdd(msg, T0 + std::chrono::seconds(i)).kind == RateStoreResult::Kind::Added));
    BOOST_TEST(store.knownSize() == 1u);  // the address key has no limit: nothing to remember
    primary.down = true;
    const auto t = T0 + 5min;
    BOOST_TEST((store.tryAdd(msg, t).kind == RateStoreResult::Kind::Added));  // 9
    BOOST_TEST((store.tryAdd(msg, t).kind == RateStoreResult::Kind::Added));  // 10
    RateStoreResult r = store.tryAdd(msg, t);
    BOOST_TEST((r.kind == RateStoreResult::Kind::Limited));  // the hour's 10, across the outage
    BOOST_TEST(r.index == 0u);
    // Known counts older than an hour no longer count; the node's own (the two above)
    // lapse with their own hour. The day limit (12) still counts the local ones.
    const auto later = T0 + 2h;
    BOOST_TEST((store.tryAdd(msg, later).kind == RateStoreResult::Kind::Added));
    // A key the primary never reported counts from zero, as before.
    const std::vector<RateRequest> other{{"msg:user:b", 1, 1, 0}};
    BOOST_TEST((store.tryAdd(other, t).kind == RateStoreResult::Kind::Added));
    BOOST_TEST((store.tryAdd(other, t).kind == RateStoreResult::Kind::Limited));
}

// A primary that does not report counts (a database before schema 009): nothing is learnt.
BOOST_AUTO_TEST_CASE(rates_without_reported_counts_learn_nothing) {
    FlakyRateStore primary;
    DegradingRateStore store(primary);
    BOOST_TEST((store.tryAdd({{"msg:user:a", 1, 10, 0}}, T0).kind == RateStoreResult::Kind::Added));
    BOOST_TEST(store.knownSize() == 0u);
}

BOOST_AUTO_TEST_CASE(memory_rate_store_raise_lifts_to_at_least) {
    MemoryRateStore m;
    m.tryAdd({{"k", 3, 0, 0}}, T0);
    m.raise("k", RateCounts{2, 7}, T0);  // the hour already has more; the day gets 4 more
    BOOST_TEST(m.get("k", T0)->lastHour == 3u);
    BOOST_TEST(m.get("k", T0)->lastDay == 7u);
    m.raise("k", RateCounts{5, 5}, T0);
    BOOST_TEST(m.get("k", T0)->lastHour == 5u);
    BOOST_TEST(m.get("k", T0)->lastDay == 7u);
}

BOOST_AUTO_TEST_SUITE_END()
