#include "store/GroupCommit.h"

#include "StoreTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
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
