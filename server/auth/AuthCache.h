// Authentication cache in the server core (not in each plugin): positive and negative
// entries keyed by a keyed hash of user and password, so no plaintext password is kept.
#pragma once

#include "core/AuthService.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace postern::auth {

struct AuthCacheSettings {
    // Set from auth.cache.size / .ttl / .negative_ttl (defaults: the key table only).
    std::size_t maxEntries = 0;                // 0 = cache off
    std::chrono::milliseconds positiveTtl{};   // a changed/disabled account is honoured within this
    std::chrono::milliseconds negativeTtl{};   // the same wrong password is answered from memory

    bool operator==(const AuthCacheSettings&) const = default;
};

// Thread-safe: 32 shards chosen by user, each with its own mutex and LRU list, so there
// is no global lock on the hot path. Keys are HMAC-SHA256(process-random key, service,
// user, password): a memory dump reveals no password and entries cannot be forged.
class AuthCache {
public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;

    explicit AuthCache(AuthCacheSettings settings, Clock clock = std::chrono::steady_clock::now);

    enum class Hit { Miss, Positive, Negative };
    // Positive: `identity` is filled. Negative: this exact password failed recently.
    // clientIp: a positive entry stored with a bound IP (an app password restricted to
    // networks) is a hit only for that IP.
    // generation (optional): the cache's clock now (a token), to pass to storePositive as
    // Limits::seenGeneration with the answer the backend gives after this miss.
    Hit find(const std::string& service, const std::string& user, const std::string& password,
             core::AuthIdentity& identity, const std::string& clientIp = {}, std::uint64_t* generation = nullptr);
    // A success that holds only under conditions (an app password): boundIp non-empty = only
    // for that client IP; maxAge = never longer than this (its expiry), even if ttl is longer.
    // seenGeneration: what find() saw before the backend was asked; if a failure of the user
    // was seen since (invalidateUser), this success may predate a password change and is not
    // stored (review finding: it replaced the newer failure for the whole ttl).
    struct Limits {
        std::string boundIp;
        std::optional<std::chrono::milliseconds> maxAge;
        std::optional<std::uint64_t> seenGeneration;
    };
    void storePositive(const std::string& service, const std::string& user, const std::string& password,
                       const core::AuthIdentity& identity, const Limits& limits = {});
    // maxAge: never longer than this (a refusal read from a replica that may lag behind).
    void storeNegative(const std::string& service, const std::string& user, const std::string& password,
                       std::optional<std::chrono::milliseconds> maxAge = std::nullopt);
    // A failed login drops every positive entry of that user (the password may have changed).
    void invalidateUser(const std::string& user);
    // Drops every entry (SIGHUP: the operator's lever after changing passwords in an incident).
    void clear();

    bool enabled() const { return settings_.maxEntries > 0; }
    std::uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
    std::uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
    std::size_t size() const;

private:
    static constexpr std::size_t Shards = 32;
    using Key = std::array<unsigned char, 32>;
    struct KeyHash {
        std::size_t operator()(const Key& k) const;
    };
    struct Entry {
        Key key;
        std::string user;
        bool positive;
        core::AuthIdentity identity;
        std::chrono::steady_clock::time_point expires;
        std::uint64_t storedAt;    // the shard's clock when stored; stale once the user is invalidated after
        std::string boundIp;       // "" = any client
    };
    struct Shard {
        std::mutex mutex;
        std::list<Entry> lru;  // front = most recent
        std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;
        // A logical clock, advanced by every invalidateUser and clear(); generations holds the
        // clock of each user's last invalidation. A user whose value was pruned counts as
        // invalidated at `pruned`, and everyone at `cleared`: never "never invalidated" again.
        std::uint64_t clock = 0;
        std::uint64_t pruned = 0;
        std::uint64_t cleared = 0;
        std::unordered_map<std::string, std::uint64_t> generations;
    };

    Key makeKey(const std::string& service, const std::string& user, const std::string& password) const;
    static std::uint64_t lastInvalidation(const Shard& s, const std::string& user, bool forStore);
    Shard& shardFor(const std::string& user);
    void store(const std::string& service, const std::string& user, const std::string& password, bool positive,
               const core::AuthIdentity& identity, const Limits& limits);

    AuthCacheSettings settings_;
    Clock clock_;
    std::array<unsigned char, 32> secret_{};
    std::array<Shard, Shards> shards_;
    std::atomic<std::uint64_t> hits_{0};
    std::atomic<std::uint64_t> misses_{0};
};

}  // namespace postern::auth
