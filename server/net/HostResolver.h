// A configured service's host name to an address within a deadline (a milter's or a policy
// server's "inet:host:port"). getaddrinfo has no timeout of its own (a resolver that drops
// queries holds the caller for attempts x servers x 5 s), so the lookup runs on a thread of
// its own and the caller waits at most until its deadline.
#pragma once

#include <Poco/Net/SocketAddress.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace postern::net {

// Thread-safe. One lookup at a time per host and port: callers that come while one runs
// wait for it (up to their own deadlines) instead of starting another, so a hanging resolver
// costs one thread, not one per session. Every call after a finished lookup looks up afresh
// (as a connect by name always did); nothing is cached. An IP literal is never looked up.
class HostResolver {
public:
    using Clock = std::chrono::steady_clock;

    // The process-wide resolver of this host and port.
    static HostResolver& forHost(const std::string& host, std::uint16_t port);

    // The address, or nullopt with `error` set ("lookup timed out", or the resolver's error)
    // when the lookup failed or did not end by `deadline`.
    std::optional<Poco::Net::SocketAddress> resolve(Clock::time_point deadline, std::string& error);

    HostResolver(std::string host, std::uint16_t port);

private:
    struct State;
    std::string host_;
    std::uint16_t port_;
    std::optional<Poco::Net::SocketAddress> literal_;  // an IP literal: no lookup
    std::shared_ptr<State> state_;                       // shared with a lookup thread
};

}  // namespace postern::net
