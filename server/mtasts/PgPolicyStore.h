// The MTA-STS policy cache shared by cluster nodes: table mta_sts_policies
// (schema/postgres/007_mta_sts.sql) in the cluster's PostgreSQL (cluster.conninfo).
#pragma once

#include "mtasts/PolicyCache.h"
#include "pg/Pool.h"

namespace postern::mtasts {

// Thread-safe (the pool is). A database error is logged once per call and taken as a miss
// (load) or a skipped write (save): the node's own state file still has the policy.
class PgPolicyStore final : public SharedPolicyStore {
public:
    explicit PgPolicyStore(pg::Pool& pool) : pool_(pool) {}
    std::optional<CachedPolicy> load(const std::string& domain, bool* failed = nullptr) override;
    void save(const CachedPolicy& p) override;

private:
    pg::Pool& pool_;
};

}  // namespace postern::mtasts
