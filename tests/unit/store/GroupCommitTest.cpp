#include "store/GroupCommit.h"

#include "StoreTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace postern::store;
using namespace postern::store::test;

BOOST_AUTO_TEST_SUITE(group_commit)

namespace {

// A gate the test opens by hand: lets a test hold an operation "running".
struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    bool entered = false;
    void wait() {
        std::unique_lock l(m);
        entered = true;
        cv.notify_all();
        cv.wait(l, [&] { return open; });
    }
    void waitEntered() {
        std::unique_lock l(m);
        cv.wait(l, [&] { return entered; });
    }
    void release() {
        std::lock_guard l(m);
        open = true;
        cv.notify_all();
    }
};

// Holds the first batch (its operation waits at `gate`) while `a` and `b` join the next
// one, then lets everything run.
template <class A, class B>
void inOneBatch(GroupCommit& gc, Gate& gate, A a, B b) {
    std::thread first([&] { gc.sync(); });
    gate.waitEntered();
    std::thread ta(a), tb(b);
    while (gc.stats().waiters < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    gate.release();
    first.join();
    ta.join();
    tb.join();
}

}  // namespace

BOOST_AUTO_TEST_CASE(lone_caller_runs_the_operation_at_once_each_time) {
    int runs = 0;
    GroupCommit gc([&] { return ++runs, 0; });
    for (int i = 1; i <= 5; ++i) {
        auto r = gc.sync();
        BOOST_TEST(r.error == 0);
        BOOST_TEST(r.batch == static_cast<std::uint64_t>(i));  // never served by an earlier operation
    }
    BOOST_TEST(runs == 5);
    BOOST_TEST(gc.stats().syncs == 5u);
    BOOST_TEST(gc.stats().waiters == 5u);
}

BOOST_AUTO_TEST_CASE(caller_arriving_during_an_operation_waits_for_the_next_one) {
    Gate gate;
    std::atomic<int> runs{0};
    GroupCommit gc([&] {
        if (++runs == 1) gate.wait();  // the first operation stays "running" until released
        return 0;
    });
    GroupCommit::Result a, b;
    std::thread ta([&] { a = gc.sync(); });
    gate.waitEntered();
    std::atomic<bool> bDone{false};
    std::thread tb([&] {
        b = gc.sync();
        bDone = true;
    });
    // B must not return while A's operation (which started before B called) is running.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    BOOST_TEST(!bDone.load());
    gate.release();
    ta.join();
    tb.join();
    BOOST_TEST(a.batch == 1u);
    BOOST_TEST(b.batch == 2u);
    BOOST_TEST(runs.load() == 2);
}

BOOST_AUTO_TEST_CASE(many_threads_each_wait_for_a_sync_that_covers_their_write) {
    // "written" counts writes; an operation makes durable what was written when it STARTED.
    std::atomic<std::uint64_t> written{0};
    std::atomic<std::uint64_t> durable{0};
    GroupCommit gc([&] {
        std::uint64_t seen = written.load();
        std::this_thread::sleep_for(std::chrono::microseconds(300));  // a sync takes time
        std::uint64_t prev = durable.load();
        while (prev < seen && !durable.compare_exchange_weak(prev, seen)) {
        }
        return 0;
    });
    constexpr int Threads = 32, Rounds = 40;
    std::atomic<int> violations{0}, errors{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < Threads; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < Rounds; ++i) {
                std::uint64_t mine = ++written;
                auto r = gc.sync();
                if (r.error != 0) ++errors;
                if (durable.load() < mine) ++violations;
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(violations.load() == 0);
    BOOST_TEST(errors.load() == 0);
    auto s = gc.stats();
    BOOST_TEST(s.waiters == static_cast<std::uint64_t>(Threads * Rounds));
    // Shared: far fewer operations than callers (each batch = whoever arrived meanwhile).
    BOOST_TEST(s.syncs < s.waiters / 2);
    BOOST_TEST_MESSAGE("syncs " << s.syncs << " for " << s.waiters << " waiters");
}

BOOST_AUTO_TEST_CASE(a_failed_operation_fails_exactly_its_batch) {
    constexpr std::uint64_t Failing = 3;
    std::atomic<std::uint64_t> runs{0};
    GroupCommit gc([&] {
        std::uint64_t n = ++runs;
        std::this_thread::sleep_for(std::chrono::microseconds(500));
        return n == Failing ? EIO : 0;
    });
    constexpr int Threads = 16, Rounds = 10;
    std::mutex m;
    std::vector<GroupCommit::Result> results;
    std::vector<std::thread> ts;
    for (int t = 0; t < Threads; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < Rounds; ++i) {
                auto r = gc.sync();
                std::lock_guard l(m);
                results.push_back(r);
            }
        });
    for (auto& t : ts) t.join();
    BOOST_REQUIRE(results.size() == static_cast<std::size_t>(Threads * Rounds));
    std::size_t failedCalls = 0, inFailing = 0;
    for (const auto& r : results) {
        if (r.batch == Failing) {
            ++inFailing;
            BOOST_TEST(r.error == EIO);
        } else {
            BOOST_TEST(r.error == 0);
        }
        failedCalls += r.error != 0;
    }
    BOOST_TEST(inFailing >= 1u);
    BOOST_TEST(failedCalls == inFailing);
    BOOST_TEST(gc.stats().failures == 1u);
    BOOST_TEST(runs.load() > Failing);  // later batches ran fresh operations and succeeded
}

BOOST_AUTO_TEST_CASE(sync_around_runs_the_step_between_two_operations) {
    std::vector<std::string> events;
    GroupCommit gc([&] { return events.push_back("op"), 0; });
    GroupCommit::Step step = [&] { return events.push_back("step"), 0; };
    auto r = gc.syncAround(step);
    BOOST_TEST(r.error == 0);
    BOOST_TEST((r.stage == GroupCommit::Stage::Done));
    BOOST_TEST((events == std::vector<std::string>{"op", "step", "op"}));
    BOOST_TEST(gc.stats().syncs == 2u);
    BOOST_TEST(gc.stats().waiters == 1u);
    events.clear();
    BOOST_TEST(gc.sync().error == 0);  // no step: one operation
    BOOST_TEST((events == std::vector<std::string>{"op"}));
}

BOOST_AUTO_TEST_CASE(sync_around_steps_of_one_batch_share_both_operations) {
    // Every caller's step runs after an operation that started after the caller joined,
    // and an operation runs after every step before any caller returns.
    std::atomic<std::uint64_t> written{0}, durable{0}, stepped{0}, durableSteps{0};
    std::atomic<int> ops{0};
    GroupCommit gc([&] {
        ++ops;
        std::uint64_t w = written.load(), s = stepped.load();
        std::this_thread::sleep_for(std::chrono::microseconds(300));
        for (auto [mark, seen] : {std::pair{&durable, w}, std::pair{&durableSteps, s}}) {
            std::uint64_t prev = mark->load();
            while (prev < seen && !mark->compare_exchange_weak(prev, seen)) {
            }
        }
        return 0;
    });
    constexpr int Threads = 16, Rounds = 20;
    std::atomic<int> violations{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < Threads; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < Rounds; ++i) {
                const std::uint64_t mine = ++written;
                std::uint64_t myStep = 0;
                GroupCommit::Step step = [&] {
                    if (durable.load() < mine) ++violations;  // the data barrier came first
                    myStep = ++stepped;
                    return 0;
                };
                auto r = gc.syncAround(step);
                if (r.error != 0 || myStep == 0 || durableSteps.load() < myStep) ++violations;
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(violations.load() == 0);
    auto s = gc.stats();
    BOOST_TEST(s.waiters == static_cast<std::uint64_t>(Threads * Rounds));
    BOOST_TEST(s.syncs == static_cast<std::uint64_t>(ops.load()));
    BOOST_TEST(s.syncs < s.waiters);  // shared: fewer operations than callers, though two per batch
    BOOST_TEST_MESSAGE("syncs " << s.syncs << " for " << s.waiters << " callers");
}

BOOST_AUTO_TEST_CASE(sync_around_failures_name_their_stage) {
    int runs = 0, failOn = 1, steps = 0;
    GroupCommit gc([&] { return ++runs == failOn ? EIO : 0; });
    GroupCommit::Step ok = [&] { return ++steps, 0; };
    auto r = gc.syncAround(ok);  // the first operation fails: the step does not run
    BOOST_TEST(r.error == EIO);
    BOOST_TEST((r.stage == GroupCommit::Stage::FirstSync));
    BOOST_TEST(steps == 0);
    failOn = 3;  // the next batch: first op (2) succeeds, the second (3) fails after the step
    r = gc.syncAround(ok);
    BOOST_TEST(r.error == EIO);
    BOOST_TEST((r.stage == GroupCommit::Stage::SecondSync));
    BOOST_TEST(steps == 1);
    GroupCommit::Step bad = [] { return ENOSPC; };
    r = gc.syncAround(bad);  // a failed step fails its caller with its own errno
    BOOST_TEST(r.error == ENOSPC);
    BOOST_TEST((r.stage == GroupCommit::Stage::Step));
    GroupCommit::Step throws = []() -> int { throw std::runtime_error("x"); };
    r = gc.syncAround(throws);
    BOOST_TEST(r.error == EIO);
    BOOST_TEST((r.stage == GroupCommit::Stage::Step));
    BOOST_TEST(gc.stats().failures == 2u);
}

BOOST_AUTO_TEST_CASE(a_failed_step_fails_only_its_own_caller) {
    Gate gate;
    std::atomic<int> runs{0};
    GroupCommit gc([&] {
        if (++runs == 1) gate.wait();  // hold the first batch so the next two join one batch
        return 0;
    });
    GroupCommit::Result good, bad;
    GroupCommit::Step okStep = [] { return 0; };
    GroupCommit::Step badStep = [] { return EROFS; };
    inOneBatch(gc, gate, [&] { good = gc.syncAround(okStep); }, [&] { bad = gc.syncAround(badStep); });
    BOOST_TEST(good.batch == bad.batch);  // one batch served both
    BOOST_TEST(good.error == 0);
    BOOST_TEST(bad.error == EROFS);
    BOOST_TEST((bad.stage == GroupCommit::Stage::Step));
    BOOST_TEST(runs.load() == 3);  // the held one, then one pair for both steps
}

BOOST_AUTO_TEST_CASE(a_plain_sync_in_a_batch_with_steps_needs_only_the_first_operation) {
    Gate gate;
    std::atomic<int> runs{0};
    GroupCommit gc([&] {
        const int n = ++runs;
        if (n == 1) gate.wait();  // hold the first batch so the next two join one batch
        return n == 3 ? EIO : 0;  // the second operation of that batch fails
    });
    GroupCommit::Result plain, around;
    GroupCommit::Step step = [] { return 0; };
    inOneBatch(gc, gate, [&] { plain = gc.sync(); }, [&] { around = gc.syncAround(step); });
    BOOST_TEST(plain.batch == around.batch);
    BOOST_TEST(plain.error == 0);  // its write was durable after the first operation
    BOOST_TEST((plain.stage == GroupCommit::Stage::Done));
    BOOST_TEST(around.error == EIO);
    BOOST_TEST((around.stage == GroupCommit::Stage::SecondSync));
}

BOOST_AUTO_TEST_CASE(a_throwing_operation_fails_its_batch_and_later_batches_still_run) {
    int runs = 0;
    GroupCommit gc([&]() -> int {
        if (++runs == 1) throw std::runtime_error("x");
        return 0;
    });
    auto r = gc.sync();
    BOOST_TEST(r.error == EIO);
    BOOST_TEST(gc.sync().error == 0);  // not stuck "running"
}

BOOST_AUTO_TEST_CASE(for_file_system_of_syncs_a_real_directory) {
    TempDir t;
    auto gc = GroupCommit::forFileSystemOf(t.path.string());
    BOOST_REQUIRE(gc);
    spit(t.path / "f", "data");
    auto r = gc->sync();
    BOOST_TEST(r.error == 0);
    BOOST_TEST(r.batch == 1u);
    BOOST_TEST(!GroupCommit::forFileSystemOf((t.path / "missing").string()));
}

BOOST_AUTO_TEST_SUITE_END()
