#include "store/GroupCommit.h"

#include <cerrno>
#include <fcntl.h>
#include <unistd.h>

namespace postern::store {

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

GroupCommit::Result GroupCommit::sync() {
    std::unique_lock lock(mutex_);
    // Join the batch that has not started yet: its operation starts after this point.
    std::shared_ptr<Batch> mine = open_;
    ++stats_.waiters;
    for (;;) {
        if (mine->done) return {mine->error, mine->seq};
        if (!running_ && mine == open_) {
            // Nobody is syncing: lead this batch now (no timer, no waiting for company).
            running_ = true;
            mine->seq = nextSeq_++;
            open_ = std::make_shared<Batch>();  // later callers form the next batch
            lock.unlock();
            int err = op_();
            lock.lock();
            mine->done = true;
            mine->error = err;
            running_ = false;
            ++stats_.syncs;
            if (err != 0) ++stats_.failures;
            // Wakes this batch's waiters and the next batch (one of which leads it).
            done_.notify_all();
            return {err, mine->seq};
        }
        done_.wait(lock);
    }
}

GroupCommit::Stats GroupCommit::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace postern::store
