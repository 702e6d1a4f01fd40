// POP-before-SMTP grants kept in memory (one node): after a POP3 login from an address,
// that address may relay through SMTP until the grant expires. One grant per (address,
// user): subscribers behind one NAT address each keep their own.
#pragma once

#include "core/Clock.h"
#include "core/GrantStore.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace postern::grants {

// Thread-safe: 16 shards chosen by a hash of the key, each with its own mutex, so lookups
// from many SMTP sessions never wait on one global lock. Expired grants are forgotten
// lazily on lookup and by sweep() (call it periodically; it logs each expiry).
//
// Keys: IPv4 exact; IPv6 masked to `ipv6PrefixLength` bits (128 = exact, 64 = a /64, for
// clients that rotate privacy addresses). IPv4-mapped IPv6 is keyed as IPv4.
class MemoryGrantStore : public core::GrantStore {
public:
    using Clock = core::Clock;

    // pop_before_smtp.lifetime (must be > 0), pop_before_smtp.ipv6_prefix (0..128; its
    // default lives in the key table only), clock (default std::chrono::system_clock::now). Throws std::invalid_argument
    // on a bad lifetime or prefix (fail at start-up, not at the first login).
    explicit MemoryGrantStore(std::chrono::seconds lifetime, unsigned ipv6PrefixLength, Clock clock = {});

    // Records or renews the user's grant for the address (expires = now + lifetime); other
    // users' grants for it stay. Logs event=grant.add.
    // Always true (memory cannot fail short of bad_alloc).
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override;
    // Yes and *out (if out != nullptr) while a grant for the key exists and has not expired
    // (expires > now): the one `sender` belongs to, else the one expiring last (core::pickGrant);
    // No otherwise. Never TempFail.
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& client, const std::string& sender, core::Grant* out) override;

    // Removes every expired grant; logs event=grant.expire for each. Returns how many.
    std::size_t sweep();
    // Number of grants held, one per (address, user) (expired ones not yet swept included).
    std::size_t size() const;

    // The key text used in logs: "192.0.2.7", "2001:db8::1" or "2001:db8:1:2::/64".
    std::string keyText(const core::ClientAddress& client) const;

private:
    struct Entry {
        core::Grant grant;
        std::string ipText;               // for the expiry log line
        std::vector<std::string> owned;   // the user and its senders, lower-cased (lookups by MAIL FROM)
    };
    struct Shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, std::vector<Entry>> grants;  // key -> one per user
    };
    static constexpr std::size_t ShardCount = 16;

    std::string key(const core::ClientAddress& client) const;
    Shard& shardFor(const std::string& key);

    std::chrono::seconds lifetime_;
    unsigned ipv6PrefixLength_;
    Clock clock_;
    std::array<Shard, ShardCount> shards_;
};

}  // namespace postern::grants
