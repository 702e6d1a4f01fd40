// POP-before-SMTP grants in memory: sharded map keyed by client address (IPv6 by prefix),
// one grant per user of an address, lazy expiry plus sweep(). Logs to postern.grants.
#include "grants/MemoryGrantStore.h"

#include "core/EventLine.h"
#include "core/Network.h"
#include "core/Utf8.h"

#include <Poco/Logger.h>
#include <Poco/Net/IPAddress.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <utility>
#include <vector>

namespace postern::grants {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.grants"); }

// The address as IPv4 when it is IPv4 or IPv4-mapped IPv6, with its raw bytes.
struct RawAddress {
    bool v4 = false;
    unsigned char bytes[16] = {};
};

RawAddress rawOf(const Poco::Net::IPAddress& ip) {
    RawAddress r;
    const auto* p = static_cast<const unsigned char*>(ip.addr());
    if (ip.family() == Poco::Net::AddressFamily::IPv4) {
        r.v4 = true;
        std::memcpy(r.bytes, p, 4);
    } else if (ip.isIPv4Mapped()) {
        // ::ffff:a.b.c.d is the IPv4 client a.b.c.d (a dual-stack socket's spelling):
        // a grant made over one must match the other.
        r.v4 = true;
        std::memcpy(r.bytes, p + 12, 4);
    } else {
        std::memcpy(r.bytes, p, 16);
    }
    return r;
}

void maskBits(unsigned char* bytes, unsigned prefix) {
    for (unsigned i = 0; i < 16; ++i) {
        unsigned bitsHere = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bitsHere >= 8)
            continue;
        bytes[i] &= static_cast<unsigned char>(0xFF00u >> bitsHere);
    }
}

}  // namespace

MemoryGrantStore::MemoryGrantStore(std::chrono::seconds lifetime, unsigned ipv6PrefixLength, Clock clock)
    : lifetime_(lifetime), ipv6PrefixLength_(ipv6PrefixLength), clock_(core::clockOrSystem(std::move(clock))) {
    if (lifetime_ <= std::chrono::seconds::zero())
        throw std::invalid_argument("pop_before_smtp.lifetime must be positive");
    if (ipv6PrefixLength_ > 128)
        throw std::invalid_argument("pop_before_smtp.ipv6_prefix must be 0..128");
}

std::string MemoryGrantStore::key(const core::ClientAddress& client) const {
    RawAddress r = rawOf(client.ip);
    if (r.v4)
        return std::string("4") + std::string(reinterpret_cast<const char*>(r.bytes), 4);
    maskBits(r.bytes, ipv6PrefixLength_);
    return std::string("6") + std::string(reinterpret_cast<const char*>(r.bytes), 16);
}

std::string MemoryGrantStore::keyText(const core::ClientAddress& client) const {
    return core::addressKey(client.ip, ipv6PrefixLength_);
}

MemoryGrantStore::Shard& MemoryGrantStore::shardFor(const std::string& k) {
    return shards_[std::hash<std::string>{}(k) % ShardCount];
}

bool MemoryGrantStore::grant(const core::ClientAddress& client, const core::Grant& grant) {
    const std::string k = key(client);
    Entry e;
    e.grant = grant;
    e.grant.expires = clock_() + lifetime_;
    const std::string& user = grant.user;
    e.ipText = keyText(client);
    e.owned.push_back(core::asciiLower(grant.user));
    for (const auto& s : grant.senders) e.owned.push_back(core::asciiLower(s));
    const std::string ipText = e.ipText;
    {
        Shard& shard = shardFor(k);
        std::lock_guard<std::mutex> lock(shard.mutex);
        // A newer login of the same user from the address renews its grant; other users'
        // grants for the address (a NAT address shared by subscribers) stay.
        std::vector<Entry>& held = shard.grants[k];
        // Users compare exactly, as PostgreSQL's (key, user_name) primary key does.
        auto same = std::find_if(held.begin(), held.end(), [&](const Entry& x) { return x.grant.user == user; });
        if (same != held.end())
            *same = std::move(e);
        else
            held.push_back(std::move(e));
    }
    logger().information(
        core::EventLine("grant.add").add("ip", ipText).add("user", user).add("ttl", lifetime_.count(), "s").str());
    return true;
}

core::Answer MemoryGrantStore::lookup(const core::ClientAddress& client, const std::string& sender,
                                      core::Grant* out) {
    const std::string k = key(client);
    // core::pickGrant's rule, on the lower-cased forms kept with each grant.
    const std::string from = core::asciiLower(sender);
    const auto now = clock_();
    Shard& shard = shardFor(k);
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.grants.find(k);
    if (it == shard.grants.end())
        return core::Answer::No;
    // Expired grants are forgotten lazily; sweep() logs expiries of grants nobody asked about.
    std::vector<Entry>& held = it->second;
    held.erase(std::remove_if(held.begin(), held.end(), [now](const Entry& e) { return e.grant.expires <= now; }),
               held.end());
    if (held.empty()) {
        shard.grants.erase(it);
        return core::Answer::No;
    }
    const Entry* chosen = nullptr;
    for (const Entry& e : held) {
        if (!from.empty() && std::find(e.owned.begin(), e.owned.end(), from) != e.owned.end()) {
            chosen = &e;
            break;
        }
        if (!chosen || e.grant.expires > chosen->grant.expires) chosen = &e;
    }
    if (!chosen)
        return core::Answer::No;
    if (out)
        *out = chosen->grant;
    return core::Answer::Yes;
}

std::size_t MemoryGrantStore::sweep() {
    const auto now = clock_();
    std::size_t removed = 0;
    for (Shard& shard : shards_) {
        std::vector<Entry> expired;
        {
            std::lock_guard<std::mutex> lock(shard.mutex);
            for (auto it = shard.grants.begin(); it != shard.grants.end();) {
                std::vector<Entry>& held = it->second;
                auto live = std::stable_partition(held.begin(), held.end(),
                                                  [now](const Entry& e) { return e.grant.expires > now; });
                std::move(live, held.end(), std::back_inserter(expired));
                held.erase(live, held.end());
                if (held.empty())
                    it = shard.grants.erase(it);
                else
                    ++it;
            }
        }
        // Log outside the lock: a slow log channel must not stall lookups.
        for (const Entry& e : expired)
            logger().information(core::EventLine("grant.expire").add("ip", e.ipText).add("user", e.grant.user).str());
        removed += expired.size();
    }
    return removed;
}

std::size_t MemoryGrantStore::size() const {
    std::size_t n = 0;
    for (const Shard& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard.mutex);
        for (const auto& [k, held] : shard.grants) n += held.size();
    }
    return n;
}

}  // namespace postern::grants
