// Sockets for the policy delegation protocol: one request, one response, over a small pool
// of persistent connections to one policy server (TCP or UNIX-domain), as Postfix's
// smtpd keeps its policy connections (max_idle, max_ttl, request_limit, try_limit).
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::policyd {

struct PolicyEndpoint {
    enum class Kind { Inet, Unix };
    Kind kind = Kind::Inet;
    std::string host;         // Inet: name or address ("[v6]" brackets removed)
    std::uint16_t port = 0;   // Inet
    std::string path;         // Unix

    // "inet:host:port", "inet:[2001:db8::1]:port" or "unix:/path". nullopt + error if not.
    static std::optional<PolicyEndpoint> parse(std::string_view text, std::string& error);
    std::string describe() const;  // as configured, for logs
};

struct PolicyClientSettings {
    PolicyEndpoint endpoint;
    // Set from the policy.* keys (PolicyDelegation::fromConfig); their one default lives in
    // the key table (server/config/ConfigSchema.cpp).
    std::chrono::milliseconds timeout{};  // policy.timeout: whole query: connect, write, read, retries
    std::chrono::milliseconds maxIdle{};  // policy.max_idle: an idle connection older than this is closed
    std::chrono::milliseconds maxTtl{};   // policy.max_ttl: a connection is not reused past this age
    unsigned requestLimit = 0;            // policy.request_limit: requests per connection (0 = no limit)
    unsigned tryLimit = 0;                // policy.try_limit: attempts when the connection fails
    std::size_t poolSize = 0;             // policy.pool_size: idle connections kept for reuse
};

struct QueryResult {
    bool ok = false;
    std::string response;  // ok: one complete response (through its empty line)
    std::string error;     // not ok: "timeout", "connect: ...", "closed", "oversized", ...
    bool timedOut = false;
    unsigned tries = 0;
};

// Thread-safe: each query() uses a connection of its own (from the pool or new) and
// returns it afterwards. Never blocks longer than settings.timeout; never throws.
class PolicyClient {
public:
    explicit PolicyClient(PolicyClientSettings settings);
    ~PolicyClient();
    PolicyClient(const PolicyClient&) = delete;
    PolicyClient& operator=(const PolicyClient&) = delete;

    QueryResult query(const std::string& request);

    const PolicyClientSettings& settings() const { return settings_; }
    std::uint64_t connectionsOpened() const { return opened_.load(); }
    std::size_t idleConnections() const;

private:
    using Clock = std::chrono::steady_clock;
    struct Connection {
        Poco::Net::StreamSocket socket;
        Clock::time_point created;
        Clock::time_point lastUsed;
        unsigned requests = 0;
    };
    enum class Attempt { Ok, Timeout, ConnectionFailed, ProtocolError };

    std::unique_ptr<Connection> takeIdle(Clock::time_point now);
    std::unique_ptr<Connection> connect(Clock::time_point deadline, std::string& error, bool& timedOut);
    Attempt exchange(Connection& c, const std::string& request, Clock::time_point deadline, std::string& response,
                     std::string& error);
    void giveBack(std::unique_ptr<Connection> c);
    void dropIdle();

    PolicyClientSettings settings_;
    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<Connection>> idle_;  // most recently used last
    std::atomic<std::uint64_t> opened_{0};
};

}  // namespace postern::policyd
