// Sends lookups that only read to a streaming replica while it is up and not lagging behind
// a bound, and everything else (and every read it cannot vouch for) to the primary.
#pragma once

#include "pg/Pool.h"
#include "pg/QueryResult.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace postern::pg {

// A replica's answer is used only when all of these hold; otherwise the caller asks the
// primary (and a down or lagging replica never turns into a false "no" or "wrong password"):
//  - a replica is configured (a read conninfo; empty = every read on the primary, as before);
//  - its pool answered the statement (connect failure, timeout, SQL error -> primary);
//  - its replay lag, measured at most every lagCheckInterval() with lagStatement(), is
//    within maxLag (a lag that cannot be measured counts as too large);
//  - for a read that must be fresh (confirmMiss) and found nothing: the lag measured again
//    right now is within maxLag. A miss on a lagging replica (a grant or a user written a
//    moment ago on another node) is thus re-asked on the primary; a hit is trusted.
// A lag above maxLag is looked at again every LookAgainEvery, for up to secondLookWindow()
// (maxLag / 2 within 50 ms .. 500 ms), before it counts: a standby that has by then
// replayed all the WAL it had received at the first look keeps up
// (on a quiet system a record received but not yet replayed would otherwise look as old as
// the previous commit). Lag is 0 on a server that is not in recovery (prefer-standby fell back to the primary) and
// on a standby that has replayed all the WAL it received while its WAL receiver runs;
// otherwise the age of the last replayed commit (so an idle primary does not look like lag,
// and a paused replay, a cut stream or a dead primary shows as growing lag).
//
// State changes (replica used / down / lagging) are logged once each on "postern.pg":
// event=pg.replica_fallback reason=down|lag, event=pg.replica_ok.
// Thread-safe.
class ReadRouter {
public:
    // replica may be null (no read conninfo). name tags the log lines ("cluster", "auth.pg").
    ReadRouter(Pool& primary, std::unique_ptr<Pool> replica, std::chrono::milliseconds maxLag, std::string name);
    ~ReadRouter();
    ReadRouter(const ReadRouter&) = delete;
    ReadRouter& operator=(const ReadRouter&) = delete;

    bool hasReplica() const { return replica_ != nullptr; }
    Pool& primary() { return primary_; }

    // The replica's answer (see the class comment), or nullopt: ask the primary.
    // isMiss: what counts as "found nothing" for confirmMiss (null = no rows); a query that
    // always returns one row (e.g. a NULL user) passes its own test.
    using MissTest = bool (*)(const QueryResult&);
    std::optional<QueryResult> readReplica(const Statement& statement, const Params& params, bool confirmMiss,
                                           MissTest isMiss = nullptr);

    // readReplica(), else the same statement on the primary.
    QueryResult read(const Statement& statement, const Params& params, bool confirmMiss, MissTest isMiss = nullptr);
    // The primary's answer, counted as read() counts its fallbacks (after readReplica()).
    QueryResult readPrimary(const Statement& statement, const Params& params);

    struct Counts {
        std::uint64_t replicaReads = 0;   // answers taken from the replica
        std::uint64_t primaryReads = 0;   // reads sent to the primary by read() (fallbacks incl.)
        std::uint64_t fallbacks = 0;      // replica asked (or skipped) but not used: down or lagging
        std::uint64_t missConfirms = 0;   // misses re-asked on the primary because of lag
    };
    Counts counts() const;

    // The statement measuring the replay lag in milliseconds (-1 = unknown), for tests/docs.
    static const Statement& lagStatement();
    static constexpr std::chrono::milliseconds LookAgainEvery{25};
    // How long a lag above maxLag is looked at again before it counts (see the class comment).
    std::chrono::milliseconds secondLookWindow() const;

    // How often the lag is measured for ordinary reads: maxLag / 2, within 100 ms .. 1 s.
    std::chrono::milliseconds lagCheckInterval() const { return lagCheckEvery_; }

private:
    using Clock = std::chrono::steady_clock;
    enum class State { Ok, Down, Lagging };

    // Lag in ms (-1 unknown), measured now on the replica; nullopt if the replica failed.
    std::optional<long long> measureLag();
    // The cached verdict "within maxLag", remeasured when older than lagCheckEvery_.
    bool lagAcceptable();
    bool within(long long lagMs) const { return lagMs >= 0 && lagMs <= maxLag_.count(); }
    void setState(State s, long long lagMs, const std::string& why);

    Pool& primary_;
    std::unique_ptr<Pool> replica_;
    const std::chrono::milliseconds maxLag_;
    const std::chrono::milliseconds lagCheckEvery_;
    const std::string name_;

    std::mutex lagMutex_;               // one measurement at a time
    std::atomic<bool> lagOk_{true};
    std::atomic<Clock::rep> lagCheckedAt_{0};  // steady_clock ticks; 0 = never
    std::atomic<int> state_{0};

    std::atomic<std::uint64_t> replicaReads_{0};
    std::atomic<std::uint64_t> primaryReads_{0};
    std::atomic<std::uint64_t> fallbacks_{0};
    std::atomic<std::uint64_t> missConfirms_{0};
};

}  // namespace postern::pg
