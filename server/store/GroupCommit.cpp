#include "store/GroupCommit.h"

#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace postern::store {

namespace {

// Straight to futex(2), without std::atomic::wait: libstdc++ spins before it sleeps and its
// last four spins are sched_yield(2) calls, 5 % of posternd's CPU under S1' c=32 on a
// two-vCPU guest where every yield is a trip through the hypervisor's scheduler.
void futexWait(int* word, int expected) {
    // EAGAIN (the word changed first) and EINTR: the caller re-reads the word.
    ::syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futexWake(int* word, int count) { ::syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0); }

}  // namespace

GroupCommit::GroupCommit(SyncOp op) : op_(std::move(op)), open_(std::make_shared<Batch>()) {}

std::unique_ptr<GroupCommit> GroupCommit::forFileSystemOf(const std::string& directory) {
    int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return nullptr;
    // The descriptor lives as long as the committer (closed by keep_'s deleter).
    auto holder = std::shared_ptr<int>(new int(fd), [](int* p) {
        ::close(*p);
        delete p;
    });
    auto gc = std::make_unique<GroupCommit>([fd] { return ::syncfs(fd) == 0 ? 0 : (errno ? errno : EIO); });
    gc->keep_ = holder;
    return gc;
}

GroupCommit::Result GroupCommit::sync() { return join(nullptr); }

GroupCommit::Result GroupCommit::syncAround(const Step& step) {
    StepSlot slot;
    slot.step = &step;
    return join(&slot);
}

GroupCommit::Result GroupCommit::resultFor(const Batch& b, const StepSlot* slot) {
    if (b.stage == Stage::FirstSync) return {b.error, b.seq, Stage::FirstSync};
    // A plain sync() needed only the first operation, which succeeded.
    if (!slot) return {0, b.seq, Stage::Done};
    if (slot->error != 0) return {slot->error, b.seq, Stage::Step};
    return {b.error, b.seq, b.error != 0 ? b.stage : Stage::Done};
}

GroupCommit::Result GroupCommit::join(StepSlot* slot) {
    std::shared_ptr<Batch> mine;
    {
        std::unique_lock lock(mutex_);
        // Join the batch that has not started yet: its operation starts after this point.
        mine = open_;
        ++stats_.waiters;
        if (slot) mine->steps.push_back(slot);
        // Nobody is syncing: lead this batch now (no timer, no waiting for company).
        if (!running_) return lead(lock, mine, slot);
    }
    for (;;) {
        const int state = std::atomic_ref<int>(mine->state).load(std::memory_order_acquire);
        if (state == Done) return resultFor(*mine, slot);
        if (state == Startable) {
            std::unique_lock lock(mutex_);
            if (!running_ && mine == open_) return lead(lock, mine, slot);
            // Another caller of this batch (or a newcomer) leads it: wait for Done.
        }
        futexWait(&mine->state, state);
    }
}

GroupCommit::Result GroupCommit::lead(std::unique_lock<std::mutex>& lock, const std::shared_ptr<Batch>& mine,
                                      StepSlot* slot) {
    running_ = true;
    mine->seq = nextSeq_++;
    open_ = std::make_shared<Batch>();  // later callers form the next batch; mine->steps is final
    lock.unlock();
    int runs = 1;
    int err = runOp();
    Stage stage = Stage::FirstSync;
    if (err == 0 && !mine->steps.empty()) {
        for (StepSlot* s : mine->steps) {
            try {
                s->error = (*s->step)();
            } catch (...) {
                s->error = EIO;
            }
        }
        // Whatever the steps did (succeeded or undid) is made durable together.
        err = runOp();
        ++runs;
        stage = Stage::SecondSync;
    }
    lock.lock();
    mine->error = err;
    mine->stage = err != 0 ? stage : Stage::Done;
    running_ = false;
    stats_.syncs += static_cast<std::uint64_t>(runs);
    if (err != 0) ++stats_.failures;
    std::shared_ptr<Batch> next = open_;
    std::atomic_ref<int>(next->state).store(Startable, std::memory_order_release);
    lock.unlock();
    std::atomic_ref<int>(mine->state).store(Done, std::memory_order_release);
    futexWake(&mine->state, INT_MAX);  // this batch's callers return
    futexWake(&next->state, 1);        // one caller of the next batch leads it
    return resultFor(*mine, slot);
}

int GroupCommit::runOp() {
    try {
        return op_();
    } catch (...) {
        return EIO;
    }
}

GroupCommit::Stats GroupCommit::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace postern::store
