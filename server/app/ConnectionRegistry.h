// Tracks live sessions of all listeners for the graceful drain: on shutdown, sessions
// idle at a command prompt are woken (read side shut down) so they say 421 and go;
// busy ones get the configured grace time. It also holds each waiting session to a
// deadline for its whole next command (Postfix's smtpd_per_record_deadline): a socket
// timeout counts per read, and a client trickling one byte (or one byte of a TLS record or
// handshake) just inside it would hold the session's thread for ever. Writes are held to a
// deadline too (a client that reads one byte just inside the socket's send timeout would hold
// the thread as well): a write past its deadline is cut outright (both directions), and so
// is a session still open `goodbye` after a read cut (its last reply is blocked on a client
// that does not read).
//
// Each entry holds its own duplicate of the session's descriptor: shutdown(2) on it acts on
// the session's socket (plain or, after STARTTLS, under TLS: the same socket), and its number
// cannot be reused by another connection while the entry lives, even after the session's
// channel has closed its own descriptor. Acting on the session's descriptor number instead
// raced with that close: a number reused by a new connection got shut.
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

namespace postern::app {

// Thread-safe.
class ConnectionRegistry {
public:
    using Token = std::uint64_t;
    using TimePoint = std::chrono::steady_clock::time_point;

    ConnectionRegistry() = default;
    ConnectionRegistry(const ConnectionRegistry&) = delete;
    ConnectionRegistry& operator=(const ConnectionRegistry&) = delete;
    ~ConnectionRegistry();

    // Throws std::system_error when the descriptor cannot be duplicated (out of descriptors).
    Token add(const Poco::Net::StreamSocket& socket);
    // Closes the entry's duplicate: the connection's FIN goes out once the session's own
    // descriptor is closed too.
    void remove(Token token);
    // A session is about to block for the client: the whole command (or message data) must
    // have arrived by `deadline` (TimePoint{}: none), else its read side is shut
    // (cutOverdue). `idle`: it waits for its next command (woken at shutdown); message data
    // is not idle (the drain gives it its grace time). Returns false if shutdown has begun
    // (an idle session should say goodbye instead of waiting).
    // write: the session is about to block SENDING to the client (deadline required): past
    // it both directions are shut, which is what wakes a thread blocked in send(2).
    bool beginWait(Token token, TimePoint deadline, bool idle = true, bool write = false);
    // The wait ended. True when its deadline cut it: the session answers as to a timeout.
    bool endWait(Token token);
    // Shuts the read side of every waiting session past its deadline (both sides for a
    // write), and both sides of every session cut at least `goodbye` ago that is still
    // there; how many were cut. Called every `period` by the thread startDeadlines() starts
    // (and by tests).
    std::size_t cutOverdue(TimePoint now, std::chrono::milliseconds goodbye);
    // goodbye: connections.refusal_timeout (how long a cut session may take to say why).
    void startDeadlines(std::chrono::milliseconds period, std::chrono::milliseconds goodbye);
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

    // A write of the session held to `deadline` for as long as this lives (beginWait with
    // write = true; endWait when it goes, also when the write throws).
    class WriteDeadline {
    public:
        WriteDeadline(ConnectionRegistry& registry, Token token, TimePoint deadline)
            : registry_(registry), token_(token) {
            registry_.beginWait(token_, deadline, /*idle=*/false, /*write=*/true);
        }
        ~WriteDeadline() { finish(); }
        // Ends the wait now (once); true if the deadline cut it.
        bool finish() { return !std::exchange(done_, true) && registry_.endWait(token_); }
        WriteDeadline(const WriteDeadline&) = delete;
        WriteDeadline& operator=(const WriteDeadline&) = delete;

    private:
        ConnectionRegistry& registry_;
        Token token_;
        bool done_ = false;
    };

private:
    struct Entry {
        int fd = -1;           // the registry's own duplicate of the session's descriptor
        bool idle = false;     // waiting for its next command
        bool waiting = false;  // a wait is in progress (beginWait .. endWait)
        TimePoint deadline{};  // of the wait in progress; {}: none
        bool cut = false;      // that wait was cut at its deadline
        bool writing = false;  // the wait in progress is a write
        TimePoint cutAt{};     // when a wait of the session was first cut; {}: never
        bool hardCut = false;  // both directions shut
    };
    mutable std::mutex mutex_;
    std::unordered_map<Token, Entry> entries_;
    Token next_ = 1;
    std::atomic<bool> shuttingDown_{false};

    std::mutex watchMutex_;
    std::condition_variable watchWake_;
    bool watchStop_ = false;
    std::thread watcher_;
};

}  // namespace postern::app
