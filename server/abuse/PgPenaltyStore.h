// Failed-authentication counters shared by every node of a cluster through PostgreSQL
// (table auth_penalties, schema/postgres/002_cluster.sql).
#pragma once

#include "abuse/PenaltyStore.h"
#include "pg/Pool.h"

#include <cstddef>
#include <optional>

namespace postern::abuse {

// Same semantics as MemoryPenaltyStore (see PenaltyStore): each increment is one atomic
// upsert, so two nodes counting the same key never lose a failure. Instants are the caller's
// `now` (the nodes' wall clocks, which a cluster keeps in step with NTP): the same clock the
// memory store uses, so AuthPenalty behaves alike on either store; a node whose clock is
// off by d moves a counter's expiry by d.
//
// Failures: nullopt / false whenever PostgreSQL cannot answer (AuthPenalty then answers
// "try later"). The pool retries a statement once after a dropped connection; if the first
// attempt had in fact committed, that failure counts twice - the error errs toward blocking.
//
// Thread-safe (the pool hands each call its own connection). The pool must outlive this.
class PgPenaltyStore : public PenaltyStore {
public:
    explicit PgPenaltyStore(pg::Pool& pool);

    using PenaltyStore::increment;
    std::optional<PenaltyCount> increment(const std::string& key, core::TimePoint now,
                                          std::chrono::milliseconds window, std::uint32_t holdAt) override;
    std::optional<PenaltyCount> get(const std::string& key, core::TimePoint now) override;
    bool reset(const std::string& key) override;
    // One SELECT for both keys.
    std::optional<std::pair<PenaltyCount, PenaltyCount>> getPair(const std::string& first, const std::string& second,
                                                                 core::TimePoint now) override;

    // Deletes counters expired at `now` in batches of `batch` (FOR UPDATE SKIP LOCKED: safe
    // when every node sweeps at once). Returns how many this call deleted, nullopt on failure.
    std::optional<std::size_t> sweep(core::TimePoint now, std::size_t batch = 1000);

private:
    pg::Pool& pool_;
};

}  // namespace postern::abuse
