// A session's writes held to a deadline: the socket's send timeout counts per send(2), so a
// client that reads one byte just inside it would hold the session's thread (and a POP3
// maildrop lock) for ever. Every write that goes out to the socket now must be done within
// `timeout` of its start, else the connection registry's watchdog shuts the socket both
// ways and the write fails with Poco::TimeoutException (logged as a timeout). Replies only
// queued go out in the LineChannel's next read, under that read's deadline (a read cut
// while its flush is blocked is shut both ways connections.refusal_timeout later), or in a
// flush() here: before STARTTLS/STLS, and before message data without smtp.min_data_rate.
#pragma once

#include "app/ConnectionRegistry.h"
#include "net/LineChannel.h"

#include <Poco/Exception.h>

#include <chrono>
#include <cstddef>
#include <string_view>

namespace postern::app {

class GuardedWrites {
public:
    GuardedWrites(net::LineChannel& ch, ConnectionRegistry& registry, ConnectionRegistry::Token token,
                  std::chrono::milliseconds timeout)
        : ch_(ch), registry_(registry), token_(token), timeout_(timeout) {}

    // LineChannel::write; throws as it does (also when cut at the deadline).
    void write(std::string_view bytes) {
        if (!ch_.sendsNow(bytes.size())) {
            ch_.write(bytes);
            return;
        }
        ConnectionRegistry::WriteDeadline guard(registry_, token_, deadline(timeout_));
        guarded(guard, [&] { ch_.write(bytes); });
    }
    // LineChannel::flush.
    void flush() {
        if (!ch_.hasOutput()) return;
        ConnectionRegistry::WriteDeadline guard(registry_, token_, deadline(timeout_));
        guarded(guard, [&] { ch_.flush(); });
    }
    // LineChannel::closeGracefully: its flush and its linger within timeout + linger.
    void closeGracefully(std::chrono::milliseconds linger, std::size_t maxBytes) {
        ConnectionRegistry::WriteDeadline guard(registry_, token_, deadline(timeout_ + linger));
        ch_.closeGracefully(linger, maxBytes);
    }

private:
    // A write that failed because its deadline cut it is a timeout.
    template <class Write>
    static void guarded(ConnectionRegistry::WriteDeadline& guard, Write&& write) {
        try {
            write();
        } catch (const Poco::Exception&) {
            if (guard.finish()) throw Poco::TimeoutException("the client did not read our reply in time");
            throw;
        }
    }

    static ConnectionRegistry::TimePoint deadline(std::chrono::milliseconds in) {
        return std::chrono::steady_clock::now() + in;
    }

    net::LineChannel& ch_;
    ConnectionRegistry& registry_;
    ConnectionRegistry::Token token_;
    std::chrono::milliseconds timeout_;
};

}  // namespace postern::app
