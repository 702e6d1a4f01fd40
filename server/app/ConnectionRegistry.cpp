#include "app/ConnectionRegistry.h"

#include <sys/socket.h>

#include <thread>

namespace postern::app {

namespace {
// Shut the read side at the OS level: the session's blocking read returns at once and it
// ends cleanly. A TLS session then reads an EOF without close_notify, which the server
// context takes as an orderly end (SSL_OP_IGNORE_UNEXPECTED_EOF), so its 421 / -ERR still
// goes out. `both` also cuts the write
// side, which is what wakes a thread blocked in send(2).
void wake(Poco::Net::StreamSocket& s, bool both) {
    poco_socket_t fd = s.impl()->sockfd();
    if (fd != POCO_INVALID_SOCKET) ::shutdown(fd, both ? SHUT_RDWR : SHUT_RD);
}
}  // namespace

ConnectionRegistry::Token ConnectionRegistry::add(const Poco::Net::StreamSocket& socket) {
    std::lock_guard lock(mutex_);
    Token t = next_++;
    entries_.emplace(t, Entry{socket, false});
    return t;
}

void ConnectionRegistry::remove(Token token) {
    decltype(entries_)::node_type gone;
    {
        std::lock_guard lock(mutex_);
        gone = entries_.extract(token);
    }
    // Destroyed here, unlocked: the entry may hold the last reference to a TLS socket, whose
    // close sends close_notify (a blocking write) and must not hold up every other session.
}

void ConnectionRegistry::update(Token token, const Poco::Net::StreamSocket& socket) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    if (it != entries_.end()) it->second.socket = socket;
}

bool ConnectionRegistry::setIdle(Token token, bool idle) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(token);
    if (it != entries_.end()) it->second.idle = idle;
    return !shuttingDown_.load();
}

void ConnectionRegistry::beginShutdown() {
    std::lock_guard lock(mutex_);
    shuttingDown_ = true;
    for (auto& [t, e] : entries_)
        if (e.idle) wake(e.socket, false);
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
    for (auto& [t, e] : entries_) wake(e.socket, hard);
}

std::size_t ConnectionRegistry::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

}  // namespace postern::app
