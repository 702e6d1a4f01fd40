#include "app/ConnectionRegistry.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>
#include <utility>

namespace postern::app {

namespace {
// Shut the read side at the OS level: the session's blocking read returns at once and it
// ends cleanly. A TLS session then reads an EOF without close_notify, which the server
// context takes as an orderly end (SSL_OP_IGNORE_UNEXPECTED_EOF), so its 421 / -ERR still
// goes out. `both` also cuts the write
// side, which is what wakes a thread blocked in send(2).
void wake(int fd, bool both) { ::shutdown(fd, both ? SHUT_RDWR : SHUT_RD); }
}  // namespace

ConnectionRegistry::Token ConnectionRegistry::add(const Poco::Net::StreamSocket& socket) {
    const int fd = ::fcntl(socket.impl()->sockfd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "drain registry: duplicating a descriptor");
    std::lock_guard lock(mutex_);
    Token t = next_++;
    entries_.emplace(t, Entry{.fd = fd});
    return t;
}

void ConnectionRegistry::remove(Token token) {
    int fd = -1;
    {
        std::lock_guard lock(mutex_);
        auto gone = entries_.extract(token);
        if (gone) fd = gone.mapped().fd;
    }
    if (fd >= 0) ::close(fd);
}

ConnectionRegistry::~ConnectionRegistry() {
    {
        std::lock_guard lock(watchMutex_);
        watchStop_ = true;
    }
    watchWake_.notify_all();
    if (watcher_.joinable()) watcher_.join();
    for (auto& [t, e] : entries_) ::close(e.fd);
}

bool ConnectionRegistry::beginWait(Token token, TimePoint deadline, bool idle, bool write) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    if (it != entries_.end()) {
        it->second.idle = idle;
        it->second.waiting = true;
        it->second.writing = write;
        it->second.deadline = deadline;
        it->second.cut = false;
    }
    return !shuttingDown_.load();
}

bool ConnectionRegistry::endWait(Token token) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    if (it == entries_.end()) return false;
    it->second.idle = false;
    it->second.waiting = false;
    it->second.writing = false;
    it->second.deadline = TimePoint{};
    return std::exchange(it->second.cut, false);
}

std::size_t ConnectionRegistry::cutOverdue(TimePoint now, std::chrono::milliseconds goodbye) {
    std::size_t n = 0;
    std::lock_guard lock(mutex_);
    for (auto& [t, e] : entries_) {
        if (e.hardCut) continue;
        if (e.waiting && !e.cut && e.deadline != TimePoint{} && now >= e.deadline) {
            // A read in progress returns (EOF): the session answers as to a timeout and ends.
            // A write in progress fails: nothing more can reach a client that does not read.
            wake(e.fd, e.writing);
            e.hardCut = e.writing;
            e.cut = true;
            if (e.cutAt == TimePoint{}) e.cutAt = now;
            ++n;
        } else if (e.cutAt != TimePoint{} && now >= e.cutAt + goodbye) {
            // Cut a while ago and still there: its goodbye (or a reply it was sending when the
            // read side was cut) is blocked on a client that does not read.
            wake(e.fd, true);
            e.hardCut = true;
            ++n;
        }
    }
    return n;
}

void ConnectionRegistry::startDeadlines(std::chrono::milliseconds period, std::chrono::milliseconds goodbye) {
    if (watcher_.joinable()) return;
    watcher_ = std::thread([this, period, goodbye] {
        std::unique_lock lock(watchMutex_);
        while (!watchWake_.wait_for(lock, period, [this] { return watchStop_; }))
            cutOverdue(std::chrono::steady_clock::now(), goodbye);
    });
}

void ConnectionRegistry::beginShutdown() {
    std::lock_guard lock(mutex_);
    shuttingDown_ = true;
    for (auto& [t, e] : entries_)
        if (e.idle) wake(e.fd, false);
}

std::size_t ConnectionRegistry::waitEmpty(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        std::size_t n = size();
        if (n == 0 || std::chrono::steady_clock::now() >= deadline) return n;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

void ConnectionRegistry::abortAll(bool hard) {
    std::lock_guard lock(mutex_);
    for (auto& [t, e] : entries_) wake(e.fd, hard);
}

std::size_t ConnectionRegistry::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace postern::app
