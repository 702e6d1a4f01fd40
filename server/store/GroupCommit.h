// Group commit: concurrent sessions share one durability barrier (syncfs(2) of the mail
// root's file system) instead of each paying its own fsync of file and directory.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace postern::store {

// A barrier many threads wait on together. sync() returns once a run of the sync operation
// that STARTED AFTER sync() was called has finished: everything the caller wrote to the file
// system before calling sync() is then as durable as the operation makes it.
//
// Batching (no timer): the first caller while no operation runs becomes the leader and runs
// it at once, on its own thread; callers arriving while it runs form the next batch, whose
// first waiter runs the operation as soon as the previous one returns. So a lone session
// pays one operation and no waiting, and under load one operation serves every session that
// arrived during the previous one. Batches are bounded by the number of concurrent callers.
//
// Waiting costs one futex wait per caller and one wake per batch: each batch has its own
// state word that its callers wait on with futex(2) without holding the mutex, the
// leader wakes its whole batch with one notify_all and exactly one caller of the next batch
// (to lead it). A shared condition variable would wake every waiter of both batches, each
// then fighting for the mutex (that was half of posternd's futex calls under S1' c=32).
//
// A failed operation fails exactly the callers of its batch that needed it (they get its
// errno; a plain sync() needs only the first operation of a batch with steps); later batches
// run a fresh operation. Thread-safe; the object must outlive every caller.
//
// syncAround(step) is for work that must come between two barriers, such as a Maildir
// delivery: the data must be durable before any name of it exists, and the names before
// the 250. Its batch runs the operation, then every caller's step on the leader's thread,
// then the operation again. So a message waits once, not once per barrier: one sleep and
// one wake-up fewer per message, which is what a message costs most on a guest where a
// cross-CPU wake-up costs about 17 us of CPU (docs/performance.md).
class GroupCommit {
public:
    // Returns 0 on success, else an errno value.
    using SyncOp = std::function<int()>;
    // A caller's work between its batch's two operations: 0, or an errno value. It runs on
    // the leader's thread while its caller waits, so it may use the caller's stack.
    using Step = std::function<int()>;

    enum class Stage {
        Done,         // durable (and the step ran and succeeded)
        FirstSync,    // the (first) operation failed: the step did not run
        Step,         // the caller's step failed; error is what it returned
        SecondSync,   // the step ran, the operation after it failed: its work is not durable
    };

    struct Result {
        int error = 0;            // 0: durable; else the operation's (or step's) errno
        std::uint64_t batch = 0;  // sequence number of the batch that served the call (1, 2, ...)
        Stage stage = Stage::Done;
    };

    struct Stats {
        std::uint64_t syncs = 0;    // operations run (two for a batch with steps)
        std::uint64_t waiters = 0;  // sync() and syncAround() calls served
        std::uint64_t failures = 0; // operations that failed
    };

    explicit GroupCommit(SyncOp op);
    GroupCommit(const GroupCommit&) = delete;
    GroupCommit& operator=(const GroupCommit&) = delete;

    // The operation is one syncfs(2) of the file system that holds `directory` (an O_DIRECTORY
    // descriptor kept open for the committer's life; syncfs reports write-back errors of the
    // file system since the previous call on it, Linux >= 5.8). nullptr if the directory
    // cannot be opened (errno set).
    static std::unique_ptr<GroupCommit> forFileSystemOf(const std::string& directory);

    Result sync();
    // The operation, `step`, the operation again (see the class comment). Result::stage
    // tells which part failed.
    Result syncAround(const Step& step);
    Stats stats() const;

private:
    enum State : int { Waiting = 0, Startable = 1, Done = 2 };
    struct StepSlot {
        const Step* step = nullptr;
        int error = 0;  // the step's result, written by the leader before Done
    };
    struct Batch {
        // Startable: the previous operation has returned. Accessed only through
        // std::atomic_ref and futex(2) (which needs the plain int's address).
        alignas(std::atomic_ref<int>::required_alignment) int state = Waiting;
        int error = 0;                    // written before state becomes Done
        Stage stage = Stage::Done;        // which operation failed, with error
        std::uint64_t seq = 0;            // set when its operation starts
        std::vector<StepSlot*> steps;     // callers' steps (joined under the mutex)
    };

    Result join(StepSlot* slot);
    // Runs the batch `mine` (== open_, no operation running); `lock` is held on entry.
    Result lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Batch>& mine, StepSlot* slot);
    static Result resultFor(const Batch& b, const StepSlot* slot);
    int runOp();  // op_(), an exception counted as EIO (never leaves running_ set)

    SyncOp op_;
    mutable std::mutex mutex_;
    std::shared_ptr<Batch> open_;  // the batch new callers join
    bool running_ = false;         // an operation is in progress
    std::uint64_t nextSeq_ = 1;
    Stats stats_;
    std::shared_ptr<void> keep_;  // resources of op_ (the directory descriptor)
};

}  // namespace postern::store
