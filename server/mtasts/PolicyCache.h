// Fetched MTA-STS policies per domain, kept until max_age runs out (RFC 8461 5.1), in memory
// and in a state file that survives restarts (written atomically: tmp, fsync, rename).
// A shared store (PostgreSQL when clustered) may be attached: read on a miss, written on
// every put.
#pragma once

#include "mtasts/Policy.h"

#include <cstdint>
#include <map>
#include <memory>
#include <functional>
#include <unordered_map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::mtasts {

struct CachedPolicy {
    std::string domain;        // lower-case
    std::string id;            // the TXT record's id when it was fetched
    Policy policy;
    std::int64_t fetched = 0;  // unix seconds
    std::int64_t expires = 0;  // fetched + max_age
    bool operator==(const CachedPolicy&) const = default;
};

// Optional second level shared by cluster nodes. Implementations must be thread-safe and
// must not throw (a failing store is logged by the implementation and treated as a miss,
// with *failed set so that the miss is not remembered).
class SharedPolicyStore {
public:
    virtual ~SharedPolicyStore() = default;
    virtual std::optional<CachedPolicy> load(const std::string& domain, bool* failed = nullptr) = 0;
    virtual void save(const CachedPolicy& p) = 0;
};

// The state file: "# postern mta-sts cache 1", then one line per domain:
// "<domain> <id> <fetched> <expires> <mode> <max_age> <mx,mx,...>". Malformed lines are skipped.
std::string formatCacheFile(const std::vector<CachedPolicy>& entries);
std::vector<CachedPolicy> parseCacheFile(const std::string& text);

// Thread-safe. Lookups never wait for the state file being written (a write works on a
// snapshot, outside the lock lookups take), and the file keeps unexpired entries only.
class PolicyCache {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds
    // file: the state file ("" = memory only). Reads it now (a missing file is an empty cache).
    explicit PolicyCache(std::string file, Clock now = {});

    void setShared(SharedPolicyStore* shared) { shared_ = shared; }

    // The entry for `domain`, expired or not (the caller decides); nullopt if none. A domain
    // the shared store did not have either is not asked there again for SharedMissTtl:
    // most domains have no policy, and each delivery to them was a database query.
    static constexpr std::int64_t SharedMissTtl = 60;
    std::optional<CachedPolicy> get(const std::string& domain);
    // Stores and writes the state file; false if the file could not be written (the
    // memory copy is kept all the same). `error` says why.
    bool put(const CachedPolicy& entry, std::string* error = nullptr, bool toShared = true);
    // The shared store's entry for `domain` (nullopt: none, or no shared store).
    std::optional<CachedPolicy> fromShared(const std::string& domain);
    std::vector<CachedPolicy> all();

    const std::string& file() const { return file_; }

private:
    bool write(std::vector<CachedPolicy> snapshot, std::uint64_t version, std::string* error);

    std::string file_;
    Clock now_;
    SharedPolicyStore* shared_ = nullptr;
    std::mutex mutex_;  // entries_, sharedMisses_, version_
    std::map<std::string, CachedPolicy> entries_;
    std::unordered_map<std::string, std::int64_t> sharedMisses_;  // domain -> when the shared store had none
    std::uint64_t version_ = 0;    // of entries_, counted by put()
    std::mutex writeMutex_;        // one file write at a time; never held with mutex_ waited on
    std::uint64_t written_ = 0;    // the version in the file (under writeMutex_)
};

}  // namespace postern::mtasts
