#include "auth/AuthCache.h"

#include <algorithm>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>

namespace postern::auth {

std::size_t AuthCache::KeyHash::operator()(const Key& k) const {
    std::size_t h;
    std::memcpy(&h, k.data(), sizeof h);  // the key is already a uniform hash
    return h;
}

AuthCache::AuthCache(AuthCacheSettings settings, Clock clock) : settings_(settings), clock_(std::move(clock)) {
    if (RAND_bytes(secret_.data(), static_cast<int>(secret_.size())) != 1)
        throw std::runtime_error("auth cache: cannot get random bytes for its key");
}

AuthCache::Key AuthCache::makeKey(const std::string& service, const std::string& user,
                                  const std::string& password) const {
    // Length-prefixed fields so ("ab","c") and ("a","bc") never collide.
    std::string msg;
    for (const std::string* f : {&service, &user, &password}) {
        std::uint32_t n = static_cast<std::uint32_t>(f->size());
        msg.append(reinterpret_cast<const char*>(&n), sizeof n);
        msg.append(*f);
    }
    Key key{};
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), key.data(), &len);
    OPENSSL_cleanse(msg.data(), msg.size());
    return key;
}

AuthCache::Shard& AuthCache::shardFor(const std::string& user) {
    return shards_[std::hash<std::string>{}(user) % Shards];
}

std::uint64_t AuthCache::lastInvalidation(const Shard& s, const std::string& user, bool forStore) {
    auto g = s.generations.find(user);
    // A user's generation is pruned only while it has no entries: an entry found next to no
    // generation was stored after any pruned one, so `pruned` matters only to a store (a
    // success read before an invalidation that has since been pruned).
    const std::uint64_t own = g != s.generations.end() ? g->second : forStore ? s.pruned : 0;
    return std::max(own, s.cleared);
}

AuthCache::Hit AuthCache::find(const std::string& service, const std::string& user, const std::string& password,
                               core::AuthIdentity& identity, const std::string& clientIp, std::uint64_t* generation) {
    if (!enabled()) return Hit::Miss;
    Key key = makeKey(service, user, password);
    Shard& s = shardFor(user);
    std::lock_guard lock(s.mutex);
    if (generation != nullptr) *generation = s.clock;
    auto it = s.index.find(key);
    if (it == s.index.end()) {
        misses_.fetch_add(1, std::memory_order_relaxed);
        return Hit::Miss;
    }
    Entry& e = *it->second;
    if (e.expires <= clock_() || e.storedAt < lastInvalidation(s, user, false)) {
        s.lru.erase(it->second);
        s.index.erase(it);
        misses_.fetch_add(1, std::memory_order_relaxed);
        return Hit::Miss;
    }
    if (!e.boundIp.empty() && e.boundIp != clientIp) {
        misses_.fetch_add(1, std::memory_order_relaxed);
        return Hit::Miss;  // holds for another client only: ask the backend
    }
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    hits_.fetch_add(1, std::memory_order_relaxed);
    if (!e.positive) return Hit::Negative;
    identity = e.identity;
    return Hit::Positive;
}

void AuthCache::store(const std::string& service, const std::string& user, const std::string& password,
                      bool positive, const core::AuthIdentity& identity, const Limits& limits) {
    if (!enabled()) return;
    Key key = makeKey(service, user, password);
    Shard& s = shardFor(user);
    const std::size_t perShard = std::max<std::size_t>(1, settings_.maxEntries / Shards);
    std::lock_guard lock(s.mutex);
    // A success read before the user's last invalidation (a failed login, which may follow a
    // password change, or a clear) must not be stored after it.
    if (positive && limits.seenGeneration && lastInvalidation(s, user, true) > *limits.seenGeneration) return;
    auto ttl = positive ? settings_.positiveTtl : settings_.negativeTtl;
    if (limits.maxAge && *limits.maxAge < ttl) ttl = std::max(std::chrono::milliseconds(0), *limits.maxAge);
    if (ttl.count() <= 0) return;  // expired at once: it would only push a live entry out
    if (auto it = s.index.find(key); it != s.index.end()) {
        s.lru.erase(it->second);
        s.index.erase(it);
    }
    s.lru.push_front(Entry{key, user, positive, positive ? identity : core::AuthIdentity{}, clock_() + ttl, s.clock,
                         limits.boundIp});
    s.index[key] = s.lru.begin();
    while (s.lru.size() > perShard) {
        s.index.erase(s.lru.back().key);
        s.lru.pop_back();
    }
    // Generations of users with no entries left are dropped so the map stays bounded.
    if (s.generations.size() > perShard * 2) {
        for (auto g = s.generations.begin(); g != s.generations.end();) {
            bool used = false;
            for (const auto& e : s.lru)
                if (e.user == g->first) {
                    used = true;
                    break;
                }
            if (used) {
                ++g;
            } else {
                s.pruned = std::max(s.pruned, g->second);
                g = s.generations.erase(g);
            }
        }
    }
}

void AuthCache::storePositive(const std::string& service, const std::string& user, const std::string& password,
                              const core::AuthIdentity& identity, const Limits& limits) {
    store(service, user, password, true, identity, limits);
}

void AuthCache::storeNegative(const std::string& service, const std::string& user, const std::string& password,
                              std::optional<std::chrono::milliseconds> maxAge) {
    Limits limits;
    limits.maxAge = maxAge;
    store(service, user, password, false, {}, limits);
}

void AuthCache::invalidateUser(const std::string& user) {
    if (!enabled()) return;
    Shard& s = shardFor(user);
    std::lock_guard lock(s.mutex);
    s.generations[user] = ++s.clock;
}

void AuthCache::clear() {
    for (auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        s.index.clear();
        s.lru.clear();
        // Every user counts as invalidated now: a success read before the clear is not
        // stored after it.
        s.cleared = ++s.clock;
    }
}

std::size_t AuthCache::size() const {
    std::size_t n = 0;
    for (auto& s : const_cast<std::array<Shard, Shards>&>(shards_)) {
        std::lock_guard lock(s.mutex);
        n += s.lru.size();
    }
    return n;
}

}  // namespace postern::auth
