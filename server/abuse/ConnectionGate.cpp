// Connection admission: global session cap, per-address concurrency and rate per listener.
#include "abuse/ConnectionGate.h"

#include <stdexcept>
#include <utility>

namespace postern::abuse {

const char* refusalName(Refusal refusal) {
    switch (refusal) {
    case Refusal::None: return "none";
    case Refusal::TooManySessions: return "too_many_sessions";
    case Refusal::TooManyFromIp: return "too_many_from_ip";
    case Refusal::RateFromIp: return "rate_from_ip";
    }
    return "unknown";
}

Admission::Admission(Admission&& other) noexcept
    : gate_(std::exchange(other.gate_, nullptr)), key_(std::move(other.key_)), refusal_(other.refusal_) {}

Admission& Admission::operator=(Admission&& other) noexcept {
    if (this != &other) {
        release();
        gate_ = std::exchange(other.gate_, nullptr);
        key_ = std::move(other.key_);
        refusal_ = other.refusal_;
    }
    return *this;
}

void Admission::release() {
    if (ConnectionGate* gate = std::exchange(gate_, nullptr))
        gate->release(key_);
    key_.clear();
}

ConnectionGate::ConnectionGate(const ConnectionGateSettings& settings, core::Clock clock)
    : settings_(settings), allow_(core::NetworkList::parse(settings.allowNetworks)), clock_(core::clockOrSystem(std::move(clock))) {
    if (settings_.ipv6Prefix > 128)
        throw std::invalid_argument("connections.ipv6_prefix must be 0..128");
}

const ConnectionLimits& ConnectionGate::limitsFor(std::string_view listener) const {
    auto it = settings_.listeners.find(listener);
    return it == settings_.listeners.end() ? settings_.defaults : it->second;
}

std::string ConnectionGate::key(std::string_view listener, const core::ClientAddress& client) const {
    std::string k(listener);
    k += ' ';  // listener names are config leaves: no spaces
    k += core::addressKey(client.ip, settings_.ipv6Prefix);
    return k;
}

ConnectionGate::Shard& ConnectionGate::shardFor(const std::string& key) {
    return shards_[std::hash<std::string>{}(key) % ShardCount];
}

std::size_t ConnectionGate::sweepShard(Shard& shard, core::TimePoint now) {
    std::size_t removed = 0;
    for (auto it = shard.entries.begin(); it != shard.entries.end();) {
        if (it->second.concurrent == 0 && it->second.rate.isEmpty(now)) {
            it = shard.entries.erase(it);
            ++removed;
        } else {
            ++it;
        }
    }
    return removed;
}

std::size_t ConnectionGate::sweep() {
    const core::TimePoint now = clock_();
    std::size_t removed = 0;
    for (Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        removed += sweepShard(shard, now);
    }
    return removed;
}

Admission ConnectionGate::admit(std::string_view listener, const core::ClientAddress& client) {
    // Take a global slot first, optimistically, and give it back on any refusal: a
    // compare-free fetch_add keeps the hot path to one atomic operation.
    const std::uint32_t cap = settings_.maxConcurrentTotal;
    if (active_.fetch_add(1) >= cap && cap > 0) {
        active_.fetch_sub(1);
        return Admission(Refusal::TooManySessions);
    }
    if (allow_.contains(client.ip))
        return Admission(this, std::string());

    const ConnectionLimits& limits = limitsFor(listener);
    std::string k = key(listener, client);
    Shard& shard = shardFor(k);
    const core::TimePoint now = clock_();
    std::lock_guard lock(shard.mutex);
    if (++shard.admits % 256 == 0)
        sweepShard(shard, now);
    Entry& e = shard.entries[k];
    Refusal refusal = Refusal::None;
    if (limits.maxConcurrentPerIp > 0 && e.concurrent >= limits.maxConcurrentPerIp)
        refusal = Refusal::TooManyFromIp;
    else if (limits.maxPerMinutePerIp > 0 && e.rate.total(now) >= limits.maxPerMinutePerIp)
        refusal = Refusal::RateFromIp;
    if (refusal != Refusal::None) {
        if (e.concurrent == 0 && e.rate.isEmpty(now))
            shard.entries.erase(k);
        active_.fetch_sub(1);
        return Admission(refusal);
    }
    ++e.concurrent;
    e.rate.add(now, 1);
    return Admission(this, std::move(k));
}

void ConnectionGate::release(const std::string& key) {
    if (!key.empty()) {
        Shard& shard = shardFor(key);
        const core::TimePoint now = clock_();
        std::lock_guard lock(shard.mutex);
        auto it = shard.entries.find(key);
        if (it != shard.entries.end()) {
            if (it->second.concurrent > 0)
                --it->second.concurrent;
            if (it->second.concurrent == 0 && it->second.rate.isEmpty(now))
                shard.entries.erase(it);
        }
    }
    active_.fetch_sub(1);
}

std::uint32_t ConnectionGate::activeFrom(std::string_view listener, const core::ClientAddress& client) {
    std::string k = key(listener, client);
    Shard& shard = shardFor(k);
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(k);
    return it == shard.entries.end() ? 0 : it->second.concurrent;
}

std::size_t ConnectionGate::trackedKeys() const {
    std::size_t n = 0;
    for (const Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        n += shard.entries.size();
    }
    return n;
}

}  // namespace postern::abuse
