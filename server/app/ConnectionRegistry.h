// Tracks live sessions of all listeners for the graceful drain: on shutdown, sessions
// idle at a command prompt are woken (read side shut down) so they say 421 and go;
// busy ones get the configured grace time.
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>

namespace postern::app {

// Thread-safe.
class ConnectionRegistry {
public:
    using Token = std::uint64_t;

    Token add(const Poco::Net::StreamSocket& socket);
    void remove(Token token);
    // A session tells when it blocks waiting for the client's next command. Returns
    // false if shutdown has begun (the session should say goodbye instead of waiting).
    bool setIdle(Token token, bool idle);
    // The socket changed (TLS attached): keep the one that shutdown must act on.
    void update(Token token, const Poco::Net::StreamSocket& socket);

    bool isShuttingDown() const { return shuttingDown_.load(); }
    // Marks shutdown and wakes every idle session.
    void beginShutdown();
    // Waits until no session is left or the deadline passes; returns the number left.
    std::size_t waitEmpty(std::chrono::milliseconds timeout);
    // Shuts down the read side of every remaining session (end of grace): a blocking read
    // returns and the session can still send its goodbye. hard: both sides, for a session
    // that did not end that way (blocked in a write to a client that does not read).
    void abortAll(bool hard = false);
    std::size_t size() const;

private:
    struct Entry {
        Poco::Net::StreamSocket socket;
        bool idle = false;
    };
    mutable std::mutex mutex_;
    std::unordered_map<Token, Entry> entries_;
    Token next_ = 1;
    std::atomic<bool> shuttingDown_{false};
};

}  // namespace postern::app
