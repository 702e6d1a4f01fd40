// WriteBehindGrantStore over a fake durable store that can be "down": grants held and
// honoured while it is down, the queue bound, the original expiry kept on write-through,
// expired grants dropped, a later stored grant never shortened, the retry thread.
// (The PostgreSQL side of the write-through is in PgWriteThroughTest.cpp; the real outage
// and recovery in tests/e2e/test_backend_faults_grants.py.)
#include "grants/WriteBehindGrantStore.h"

#include "core/Network.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace postern;
using grants::DurableGrantStore;
using grants::WriteBehindGrantStore;
using grants::WriteBehindSettings;
using namespace std::chrono_literals;
using TimePoint = std::chrono::system_clock::time_point;

namespace {

struct FakeClock {
    std::mutex m;
    TimePoint now = TimePoint(1700000000s);
    WriteBehindGrantStore::Clock fn() {
        return [this] {
            std::lock_guard l(m);
            return now;
        };
    }
    void advance(std::chrono::seconds d) {
        std::lock_guard l(m);
        now += d;
    }
};

// The durable store: a map of key -> (grant, created), with the same rules as the
// PostgreSQL store (a write-through never shortens a later grant), and a switch for down.
class FakeDurable final : public DurableGrantStore {
public:
    explicit FakeDurable(FakeClock& clock) : clock_(clock) {}
    struct Row {
        core::Grant grant;
        TimePoint created;
    };
    std::atomic<bool> down{false};
    std::atomic<int> writeAttempts{0};

    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override {
        if (down) return false;
        std::lock_guard l(m_);
        const TimePoint now = clock_.fn()();
        core::Grant stored = grant;
        stored.expires = now + lifetime();
        rows_[keyText(client)] = Row{stored, now};
        return true;
    }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& client, const std::string&, core::Grant* out) override {
        if (down) return core::Answer::TempFail;
        std::lock_guard l(m_);
        auto it = rows_.find(keyText(client));
        if (it == rows_.end() || it->second.grant.expires <= clock_.fn()()) return core::Answer::No;
        if (out) *out = it->second.grant;
        return core::Answer::Yes;
    }
    std::string keyText(const core::ClientAddress& client) const override { return core::addressKey(client.ip, 128); }
    std::chrono::seconds lifetime() const override { return 600s; }
    WriteResult writeThrough(const std::string& key, const core::Grant& g, TimePoint created) override {
        ++writeAttempts;
        if (down) return WriteResult::Failed;
        std::lock_guard l(m_);
        auto it = rows_.find(key);
        if (it != rows_.end() && it->second.grant.expires >= g.expires) return WriteResult::Superseded;
        rows_[key] = Row{g, created};
        return WriteResult::Written;
    }
    std::optional<Row> row(const std::string& key) {
        std::lock_guard l(m_);
        auto it = rows_.find(key);
        if (it == rows_.end()) return std::nullopt;
        return it->second;
    }

private:
    FakeClock& clock_;
    std::mutex m_;
    std::map<std::string, Row> rows_;
};

struct Counts final : core::EventCounters {
    std::mutex m;
    std::map<std::string, int> n;
    void count(std::string_view event, std::string_view label) override {
        std::lock_guard l(m);
        ++n[std::string(event) + "." + std::string(label)];
    }
    void observe(std::string_view, double) override {}
    int operator[](const std::string& k) {
        std::lock_guard l(m);
        return n[k];
    }
};

core::ClientAddress addr(const std::string& ip) {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress(ip);
    return c;
}

// Holds up to n grants; retries from 1 s doubling up to 30 s (WriteBehindSettings has no
// defaults of its own for the cluster.grant_retry_* keys: the app fills it).
WriteBehindSettings limit(std::size_t n) {
    WriteBehindSettings s;
    s.queueLimit = n;
    s.retryFirst = std::chrono::milliseconds(1000);
    s.retryMax = std::chrono::milliseconds(30000);
    return s;
}

struct Fixture {
    FakeClock clock;
    FakeDurable durable{clock};
    Counts counts;
};

template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return cond();
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(write_behind_grants, Fixture)

BOOST_AUTO_TEST_CASE(store_up_writes_directly_and_queues_nothing) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    BOOST_TEST(store.queued() == 0u);
    BOOST_TEST(durable.row("192.0.2.7").has_value());
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::Yes));
    BOOST_TEST((store.lookup(addr("192.0.2.8"), nullptr) == core::Answer::No));
    BOOST_TEST(counts["grant.queued"] == 0);
}

BOOST_AUTO_TEST_CASE(store_down_grant_is_held_and_honoured_here_at_once) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test", {"bob@example.test", "b@example.test"}));
    BOOST_TEST(store.queued() == 1u);
    BOOST_TEST(counts["grant.queued"] == 1);
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "B@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    BOOST_TEST(g.senders.size() == 2u);
    BOOST_TEST((g.expires == clock.now + 600s));
    // A MAIL FROM that is not bob's: another user of the address may hold a stored grant the
    // store cannot tell about now (never "yes" on bob's grant, which would be a 554).
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "carl@example.test", nullptr) == core::Answer::TempFail));
    // Another address: the store cannot tell, and neither can we (never "no").
    BOOST_TEST((store.lookup(addr("192.0.2.8"), nullptr) == core::Answer::TempFail));
    // Nothing reached the durable store yet.
    BOOST_TEST(!durable.row("192.0.2.7").has_value());
}

BOOST_AUTO_TEST_CASE(write_through_after_recovery_keeps_the_original_expiry) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    const TimePoint loggedIn = clock.now;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    clock.advance(120s);
    auto r = store.flush();  // still down
    BOOST_TEST(r.failed);
    BOOST_TEST(store.queued() == 1u);

    durable.down = false;
    clock.advance(60s);
    r = store.flush();
    BOOST_TEST(!r.failed);
    BOOST_TEST(r.written == 1u);
    BOOST_TEST(store.queued() == 0u);
    auto row = durable.row("192.0.2.7");
    BOOST_REQUIRE(row.has_value());
    BOOST_TEST(row->grant.user == "bob@example.test");
    BOOST_TEST((row->grant.expires == loggedIn + 600s));  // not now + 600s
    BOOST_TEST((row->created == loggedIn));
    BOOST_TEST(counts["grant.written_through"] == 1);
    // Now answered by the durable store.
    BOOST_TEST((store.lookup(addr("192.0.2.7"), nullptr) == core::Answer::Yes));
}

BOOST_AUTO_TEST_CASE(queue_is_bounded_and_a_full_queue_refuses_the_new_grant) {
    WriteBehindGrantStore store(durable, limit(2), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.1"), "a@example.test"));
    BOOST_TEST(store.grant(addr("192.0.2.2"), "b@example.test"));
    BOOST_TEST(!store.grant(addr("192.0.2.3"), "c@example.test"));
    BOOST_TEST(store.queued() == 2u);
    BOOST_TEST(counts["grant.dropped_full"] == 1);
    BOOST_TEST((store.lookup(addr("192.0.2.3"), nullptr) == core::Answer::TempFail));
    // A newer login of a queued user replaces its entry: no growth, not refused.
    clock.advance(10s);
    BOOST_TEST(store.grant(addr("192.0.2.2"), "b@example.test"));
    BOOST_TEST(store.queued() == 2u);
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.2"), "b@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "b@example.test");
    BOOST_TEST((g.expires == clock.now + 600s));
    // Another user of a queued address is another entry: refused while the queue is full.
    BOOST_TEST(!store.grant(addr("192.0.2.2"), "b2@example.test"));
    BOOST_TEST(counts["grant.dropped_full"] == 2);
    // Expired entries make room before a grant is refused.
    clock.advance(595s);  // the 192.0.2.1 grant expires, 192.0.2.2 (renewed) does not
    BOOST_TEST(store.grant(addr("192.0.2.3"), "c@example.test"));
    BOOST_TEST(store.queued() == 2u);
    BOOST_TEST(counts["grant.dropped_expired"] == 1);
}

BOOST_AUTO_TEST_CASE(zero_limit_means_no_write_behind) {
    WriteBehindGrantStore store(durable, limit(0), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(!store.grant(addr("192.0.2.7"), "bob@example.test"));
    BOOST_TEST(store.queued() == 0u);
}

BOOST_AUTO_TEST_CASE(grant_expired_while_queued_is_dropped_not_written) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    BOOST_TEST(store.grant(addr("192.0.2.8"), "ann@example.test"));
    clock.advance(600s);  // expires == now: expired
    durable.down = false;
    auto r = store.flush();
    BOOST_TEST(r.written == 0u);
    BOOST_TEST(r.expired == 2u);
    BOOST_TEST(!r.failed);
    BOOST_TEST(store.queued() == 0u);
    BOOST_TEST(!durable.row("192.0.2.7").has_value());
    BOOST_TEST(durable.writeAttempts == 0);
    BOOST_TEST(counts["grant.dropped_expired"] == 2);
    BOOST_TEST(counts["grant.written_through"] == 0);
}

BOOST_AUTO_TEST_CASE(expired_held_grant_is_not_honoured) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    clock.advance(599s);
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", nullptr) == core::Answer::Yes));
    clock.advance(1s);
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", nullptr) == core::Answer::TempFail));  // the store's
    BOOST_TEST(store.queued() == 0u);
    BOOST_TEST(counts["grant.dropped_expired"] == 1);
}

BOOST_AUTO_TEST_CASE(a_later_stored_grant_is_never_shortened) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "old@example.test"));
    clock.advance(30s);
    // Meanwhile a newer login for the key was stored (another node, after recovery).
    durable.down = false;
    BOOST_TEST(durable.grant(addr("192.0.2.7"), "new@example.test"));
    auto r = store.flush();
    BOOST_TEST(r.written == 1u);  // settled: superseded
    BOOST_TEST(store.queued() == 0u);
    auto row = durable.row("192.0.2.7");
    BOOST_REQUIRE(row.has_value());
    BOOST_TEST(row->grant.user == "new@example.test");
    BOOST_TEST((row->grant.expires == clock.now + 600s));
}

BOOST_AUTO_TEST_CASE(a_direct_write_replaces_the_held_grant_of_that_key_and_user) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "old@example.test"));
    BOOST_TEST(store.grant(addr("192.0.2.8"), "other@example.test"));
    durable.down = false;
    clock.advance(5s);
    BOOST_TEST(store.grant(addr("192.0.2.7"), "old@example.test"));
    BOOST_TEST(store.queued() == 1u);  // only 192.0.2.8 is still held
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "old@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "old@example.test");
    BOOST_TEST((g.expires == clock.now + 600s));
}

BOOST_AUTO_TEST_CASE(users_sharing_an_address_each_relay_on_their_own_grant) {
    // Subscribers behind one NAT address: ann's grant is held here (the store was down),
    // bob's was stored since. Each MAIL FROM gets its own user's grant, wherever it is.
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "ann@example.test"));
    clock.advance(5s);
    durable.down = false;
    BOOST_TEST(durable.grant(addr("192.0.2.7"), "bob@example.test"));  // another node
    BOOST_TEST(store.queued() == 1u);
    core::Grant g;
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "ann@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "ann@example.test");
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    // Nobody's sender: the grant that expires last, the stored or the held one.
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "bob@example.test");
    clock.advance(1s);
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "carl@example.test"));  // held, expires last
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "ann@example.test", &g) == core::Answer::Yes));
    BOOST_TEST(g.user == "ann@example.test");
    // bob's grant is stored, which the store cannot confirm now: not carl's grant instead.
    BOOST_TEST((store.lookup(addr("192.0.2.7"), "bob@example.test", &g) == core::Answer::TempFail));
}

BOOST_AUTO_TEST_CASE(a_failed_write_stops_the_pass_and_keeps_the_rest) {
    WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
    durable.down = true;
    for (int i = 1; i <= 3; ++i) BOOST_TEST(store.grant(addr("192.0.2." + std::to_string(i)), "u@example.test"));
    auto r = store.flush();
    BOOST_TEST(r.failed);
    BOOST_TEST(durable.writeAttempts == 1);  // one slow attempt per pass, not one per grant
    BOOST_TEST(store.queued() == 3u);
    for (int i = 1; i <= 3; ++i)
        BOOST_TEST((store.lookup(addr("192.0.2." + std::to_string(i)), "u@example.test", nullptr) == core::Answer::Yes));
}

BOOST_AUTO_TEST_CASE(retry_thread_writes_through_when_the_store_is_back) {
    WriteBehindSettings s = limit(10);
    s.retryFirst = 20ms;
    s.retryMax = 80ms;
    WriteBehindGrantStore store(durable, s, counts, clock.fn());
    store.start();
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    // It keeps trying (with backoff) while the store is down...
    BOOST_TEST(eventually([&] { return durable.writeAttempts >= 3; }, 5000ms));
    BOOST_TEST(store.queued() == 1u);
    // ...and writes the grant once it is back, with the original expiry.
    const TimePoint expires = clock.now + 600s;
    clock.advance(42s);
    durable.down = false;
    BOOST_TEST(eventually([&] { return store.queued() == 0u; }, 5000ms));
    auto row = durable.row("192.0.2.7");
    BOOST_REQUIRE(row.has_value());
    BOOST_TEST((row->grant.expires == expires));
    BOOST_TEST(counts["grant.written_through"] == 1);
    store.stop();
}

// Review finding (cluster): only this node's own grant or lookup woke the retry thread, so
// after a long outage other nodes refused the relay (5xx) for up to the whole backoff. The
// pool's up listener calls databaseUp(): the pass runs at once.
BOOST_AUTO_TEST_CASE(database_up_cuts_the_backoff_short) {
    WriteBehindSettings s = limit(10);
    s.retryFirst = 20ms;
    s.retryMax = 30s;
    WriteBehindGrantStore store(durable, s, counts, clock.fn());
    store.start();
    durable.down = true;
    BOOST_TEST(store.grant(addr("192.0.2.8"), "bob@example.test"));
    // Attempts at about 20, 60, 140, 300 and 620 ms; the next one waits 640 ms more.
    BOOST_TEST(eventually([&] { return durable.writeAttempts >= 5; }, 5000ms));
    const int attempts = durable.writeAttempts;
    durable.down = false;
    std::this_thread::sleep_for(100ms);
    BOOST_TEST(durable.writeAttempts == attempts);  // the backoff has not run out...
    const auto t0 = std::chrono::steady_clock::now();
    store.databaseUp();  // ...but the database is back
    BOOST_TEST(eventually([&] { return store.queued() == 0u; }, 2000ms));
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 300ms));
    store.stop();
}

BOOST_AUTO_TEST_CASE(held_grants_at_shutdown_are_counted_as_dropped) {
    {
        WriteBehindGrantStore store(durable, limit(10), counts, clock.fn());
        store.start();
        durable.down = true;
        BOOST_TEST(store.grant(addr("192.0.2.7"), "bob@example.test"));
    }
    BOOST_TEST(counts["grant.dropped_shutdown"] == 1);
}

BOOST_AUTO_TEST_CASE(concurrent_grants_and_lookups_while_down) {
    WriteBehindSettings s = limit(100);
    s.retryFirst = 5ms;
    s.retryMax = 10ms;
    WriteBehindGrantStore store(durable, s, counts, clock.fn());
    store.start();
    durable.down = true;
    std::vector<std::thread> threads;
    std::atomic<int> yes{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                const auto a = addr("10.0." + std::to_string(t) + "." + std::to_string(i));
                store.grant(a, "u@example.test");
                if (store.lookup(a, "u@example.test", nullptr) == core::Answer::Yes) ++yes;
            }
        });
    for (auto& th : threads) th.join();
    BOOST_TEST(store.queued() == 100u);  // the bound
    BOOST_TEST(counts["grant.dropped_full"] == 100);
    BOOST_TEST(yes.load() == 100);
    durable.down = false;
    BOOST_TEST(eventually([&] { return store.queued() == 0u; }, 5000ms));
    BOOST_TEST(counts["grant.written_through"] == 100);
}

BOOST_AUTO_TEST_SUITE_END()
