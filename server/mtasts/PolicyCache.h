// Fetched MTA-STS policies per domain, kept until max_age runs out (RFC 8461 5.1), in memory
// and in a state file that survives restarts (written atomically: tmp, fsync, rename).
// A shared store (PostgreSQL when clustered) may be attached: read on a miss, written on
// every put.
#pragma once

#include "mtasts/Policy.h"

#include <cstdint>
#include <map>
#include <memory>
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
// must not throw (a failing store is logged by the implementation and treated as a miss).
class SharedPolicyStore {
public:
    virtual ~SharedPolicyStore() = default;
    virtual std::optional<CachedPolicy> load(const std::string& domain) = 0;
    virtual void save(const CachedPolicy& p) = 0;
};

// The state file: "# postern mta-sts cache 1", then one line per domain:
// "<domain> <id> <fetched> <expires> <mode> <max_age> <mx,mx,...>". Malformed lines are skipped.
std::string formatCacheFile(const std::vector<CachedPolicy>& entries);
std::vector<CachedPolicy> parseCacheFile(const std::string& text);

// Thread-safe.
class PolicyCache {
public:
    // file: the state file ("" = memory only). Reads it now (a missing file is an empty cache).
    explicit PolicyCache(std::string file);

    void setShared(SharedPolicyStore* shared) { shared_ = shared; }

    // The entry for `domain`, expired or not (the caller decides); nullopt if none.
    std::optional<CachedPolicy> get(const std::string& domain);
    // Stores and writes the state file; false if the file could not be written (the
    // memory copy is kept all the same). `error` says why.
    bool put(const CachedPolicy& entry, std::string* error = nullptr, bool toShared = true);
    // The shared store's entry for `domain` (nullopt: none, or no shared store).
    std::optional<CachedPolicy> fromShared(const std::string& domain);
    std::vector<CachedPolicy> all();

    const std::string& file() const { return file_; }

private:
    bool writeLocked(std::string* error);

    std::string file_;
    SharedPolicyStore* shared_ = nullptr;
    std::mutex mutex_;
    std::map<std::string, CachedPolicy> entries_;
};

}  // namespace postern::mtasts
