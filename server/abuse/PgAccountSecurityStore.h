// Compromised-account counters, flags and the login log in the shared PostgreSQL
// (schema/postgres/004_account_security.sql). Per flush: one multi-row write statement
// (login log rows, IPs, delivery counters, as data-modifying CTEs over unnest()ed arrays),
// one statement evaluating the thresholds of the accounts in the batch (inserting flags,
// trimming those accounts' login log to its count bound), one reading the flagged set.
// Failed attempts are written only for tracked names (decided inside the write statement);
// the prune also caps the number of accounts with a login log (max_tracked_accounts; a
// statement of its own, at most every ten minutes).
// Nothing runs per login or per delivery.
#pragma once

#include "abuse/AccountSecurityStore.h"
#include "pg/Pool.h"

#include <atomic>
#include <cstdint>

namespace postern::abuse {

class PgAccountSecurityStore final : public AccountSecurityStore {
public:
    explicit PgAccountSecurityStore(pg::Pool& pool) : pool_(pool) {}

    bool flush(const ActivityBatch& batch, core::TimePoint now, const AccountSecuritySettings& settings,
               std::vector<AccountFlag>& newlyFlagged) override;
    std::optional<std::vector<std::string>> flagged() override;
    bool release(const std::string& user) override;
    bool prune(core::TimePoint now, const AccountSecuritySettings& settings) override;
    AccountStoreCounters counters() const override;
    std::optional<bool> knownAddress(const std::string& user, const std::string& ip, unsigned ipv6Prefix,
                                     core::TimePoint ipsSince, core::TimePoint logSince) override;

private:
    pg::Pool& pool_;
    std::atomic<std::uint64_t> untracked_{0};
    std::atomic<std::uint64_t> evicted_{0};
    core::TimePoint lastEvict_{};  // the flush thread's (prune is called from it only)
};

}  // namespace postern::abuse
