// Cheap checks when a connection is accepted, before any protocol: concurrent connections
// and connection rate per client address and listener, and a global cap on sessions.
// A refusal is answered 421 4.7.0 (SMTP) / -ERR [SYS/TEMP] (POP3) and the socket closed.
#pragma once

#include "core/Clock.h"
#include "core/Network.h"
#include "abuse/SlidingWindow.h"
#include "core/ClientAddress.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::abuse {

// Per listener; 0 = no limit. The values come from the configuration (defaults live in the
// key table, server/config/ConfigSchema.cpp, only).
struct ConnectionLimits {
    std::uint32_t maxConcurrentPerIp = 0;  // [connections.max_per_ip, listener.<name>.max_connections_per_ip]
    std::uint32_t maxPerMinutePerIp = 0;   // [connections.rate_per_ip, listener.<name>.connection_rate_per_ip]

    bool operator==(const ConnectionLimits&) const = default;
};

struct ConnectionGateSettings {
    ConnectionLimits defaults;                                      // listeners not named below
    std::map<std::string, ConnectionLimits, std::less<>> listeners; // per-listener limits
    std::uint32_t maxConcurrentTotal = 0;  // [connections.max_total] all listeners; 0 = no cap
    std::string allowNetworks;             // [connections.allow_networks] CIDR list
    unsigned ipv6Prefix = 0;               // set from connections.ipv6_prefix: IPv6 keyed by /N

    bool operator==(const ConnectionGateSettings&) const = default;
};

enum class Refusal {
    None,
    TooManySessions,  // the global cap on concurrent sessions is reached
    TooManyFromIp,    // this address has maxConcurrentPerIp connections open on this listener
    RateFromIp,       // this address opened maxPerMinutePerIp connections within a minute
};

// "too_many_sessions", "too_many_from_ip", "rate_from_ip", "none" (for the log).
const char* refusalName(Refusal refusal);

class ConnectionGate;

// The result of ConnectionGate::admit(): either a ticket holding a concurrent slot, released
// when the Admission is destroyed (or release() is called), or a refusal. Move-only. The
// gate must outlive every Admission it issued. May be destroyed on any thread.
class Admission {
public:
    Admission() = default;
    Admission(Admission&& other) noexcept;
    Admission& operator=(Admission&& other) noexcept;
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;
    ~Admission() { release(); }

    bool isAdmitted() const { return gate_ != nullptr; }
    explicit operator bool() const { return isAdmitted(); }
    // Refusal::None when admitted (or after release()).
    Refusal refusal() const { return refusal_; }
    // Gives the slot back now; idempotent.
    void release();

private:
    friend class ConnectionGate;
    Admission(ConnectionGate* gate, std::string key) : gate_(gate), key_(std::move(key)) {}
    explicit Admission(Refusal refusal) : refusal_(refusal) {}

    ConnectionGate* gate_ = nullptr;
    std::string key_;  // "" = not counted per address (allow-listed)
    Refusal refusal_ = Refusal::None;
};

// Thread-safe: the global count is an atomic; per-address state lives in 32 shards with a
// mutex each (no global lock). Clients in allowNetworks skip the per-address limits but
// still count towards, and are refused at, the global cap (a resource limit, not a
// penalty). Refused attempts are not counted in the rate. The rate window slides in 5 s
// buckets (never more than the limit in any minute; see SlidingWindow).
// Per-address entries are dropped when idle (no open connection, nothing in the window).
class ConnectionGate {
public:
    // clock: default system_clock::now. Throws std::invalid_argument on ipv6Prefix > 128
    // or a bad allow_networks entry.
    explicit ConnectionGate(const ConnectionGateSettings& settings, core::Clock clock = {});
    ConnectionGate(const ConnectionGate&) = delete;
    ConnectionGate& operator=(const ConnectionGate&) = delete;

    // Checks the global cap, then this address's concurrent connections and rate on
    // `listener`; when all pass, takes a slot and counts the connection.
    Admission admit(std::string_view listener, const core::ClientAddress& client);

    // Sessions currently admitted (all listeners).
    std::uint32_t active() const { return active_.load(); }
    // Connections currently open from `client`'s key on `listener`.
    std::uint32_t activeFrom(std::string_view listener, const core::ClientAddress& client);
    // Per-address entries held (for tests and metrics).
    std::size_t trackedKeys() const;
    // Drops every idle entry now (admit() also sweeps a shard every 256th call to it);
    // returns how many.
    std::size_t sweep();
    const ConnectionLimits& limitsFor(std::string_view listener) const;

private:
    friend class Admission;
    struct Entry {
        std::uint32_t concurrent = 0;
        SlidingWindow rate{std::chrono::minutes(1), 12};
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, Entry> entries;
        std::uint32_t admits = 0;
    };
    static constexpr std::size_t ShardCount = 32;

    std::string key(std::string_view listener, const core::ClientAddress& client) const;
    Shard& shardFor(const std::string& key);
    static std::size_t sweepShard(Shard& shard, core::TimePoint now);  // shard.mutex held
    void release(const std::string& key);

    ConnectionGateSettings settings_;
    core::NetworkList allow_;
    core::Clock clock_;
    std::atomic<std::uint32_t> active_{0};
    std::array<Shard, ShardCount> shards_;
};

}  // namespace postern::abuse
