// Reads on a streaming replica within a lag bound, everything else on the primary.
#include "pg/ReadRouter.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <thread>

namespace postern::pg {

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.pg");
    return l;
}

// Lag in ms: 0 when not in recovery, or when everything received has been replayed while a
// WAL receiver runs (pg_stat_wal_receiver has a row: any role sees the row, only its
// details are restricted); otherwise the age of the last replayed commit; -1 = unknown
// (nothing replayed since the standby started, and it is not caught up).
const Statement LagStatement{
    "postern_replica_lag",
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() IS NOT NULL"
    "  AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()"
    "  AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 0"
    " ELSE COALESCE((extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)"
    " END, pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,"
    " EXISTS (SELECT 1 FROM pg_stat_wal_receiver)"};

// "16/B374D848" -> 0x16B374D848; 0 if absent or malformed.
std::uint64_t lsnOf(const Value& v) {
    if (!v) {
        return 0;
    }
    const auto slash = v->find('/');
    if (slash == std::string::npos) {
        return 0;
    }
    try {
        return (std::stoull(v->substr(0, slash), nullptr, 16) << 32) | std::stoull(v->substr(slash + 1), nullptr, 16);
    } catch (const std::exception&) {
        return 0;
    }
}

std::chrono::milliseconds checkEvery(std::chrono::milliseconds maxLag) {
    return std::clamp(maxLag / 2, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

}  // namespace

std::chrono::milliseconds ReadRouter::secondLookWindow() const {
    return std::clamp(maxLag_ / 2, std::chrono::milliseconds(50), std::chrono::milliseconds(500));
}

const Statement& ReadRouter::lagStatement() {
    return LagStatement;
}

ReadRouter::ReadRouter(Pool& primary, std::unique_ptr<Pool> replica, std::chrono::milliseconds maxLag,
                       std::string name)
    : primary_(primary),
      replica_(std::move(replica)),
      maxLag_(maxLag),
      lagCheckEvery_(checkEvery(maxLag)),
      name_(std::move(name)) {}

ReadRouter::~ReadRouter() = default;

ReadRouter::Counts ReadRouter::counts() const {
    Counts c;
    c.replicaReads = replicaReads_.load();
    c.primaryReads = primaryReads_.load();
    c.fallbacks = fallbacks_.load();
    c.missConfirms = missConfirms_.load();
    return c;
}

void ReadRouter::setState(State s, long long lagMs, const std::string& why) {
    const int old = state_.exchange(static_cast<int>(s));
    if (old == static_cast<int>(s)) {
        return;
    }
    if (s == State::Ok) {
        logger().notice(core::EventLine("pg.replica_ok").add("pool", name_).str());
        return;
    }
    core::EventLine line("pg.replica_fallback");
    line.add("pool", name_).add("reason", s == State::Down ? "down" : "lag");
    if (s == State::Lagging) {
        line.add("lag_ms", lagMs).add("max_lag_ms", static_cast<long long>(maxLag_.count()));
    } else {
        line.text("error", why);
    }
    logger().warning(line.str());
}

std::optional<long long> ReadRouter::measureLag() {
    long long lag = -1;
    // On a quiet primary the last replayed commit may be minutes old (or none since the
    // standby started): a standby caught between receiving a record and replaying it would
    // look minutes behind. A second look shortly after tells that apart from a real lag: a
    // standby that has meanwhile replayed all it had received at the first look keeps up.
    // On a loaded machine one fixed second look can come too early (a CI run under ASan saw
    // a standby fine by every other measure counted as lagging), so look again every
    // LookAgainEvery for up to secondLookWindow().
    std::uint64_t receivedAtFirstLook = 0;
    const auto giveUpAt = Clock::now() + secondLookWindow();
    for (int attempt = 0;; ++attempt) {
        if (attempt > 0) {
            if (Clock::now() >= giveUpAt) {
                break;
            }
            std::this_thread::sleep_for(LookAgainEvery);
        }
        QueryResult r = replica_->execute(LagStatement, {});
        if (r.failed()) {
            setState(State::Down, 0, r.error);
            return std::nullopt;
        }
        lag = -1;
        const bool shaped = r.ok() && !r.rows.empty() && r.rows[0].size() == 4;
        if (shaped && r.rows[0][0]) {
            try {
                lag = std::stoll(*r.rows[0][0]);
            } catch (const std::exception&) {
                lag = -1;
            }
        }
        if (within(lag)) {
            break;
        }
        if (!shaped) {
            break;
        }
        if (attempt == 0) {
            receivedAtFirstLook = lsnOf(r.rows[0][1]);
        } else if (receivedAtFirstLook != 0 && lsnOf(r.rows[0][2]) >= receivedAtFirstLook &&
                   r.rows[0][3].value_or("f") == "t") {
            lag = 0;  // replayed everything it had a moment ago, WAL receiver still running
            break;
        }
        if (receivedAtFirstLook == 0) {
            break;  // nothing received to wait for: the age of the last commit is the lag
        }
    }
    lagOk_ = within(lag);
    lagCheckedAt_ = Clock::now().time_since_epoch().count();
    setState(within(lag) ? State::Ok : State::Lagging, lag, {});
    return lag;
}

bool ReadRouter::lagAcceptable() {
    const auto now = Clock::now().time_since_epoch().count();
    const auto every = std::chrono::duration_cast<Clock::duration>(lagCheckEvery_).count();
    const auto at = lagCheckedAt_.load();
    if (at != 0 && now - at < every) {
        return lagOk_;
    }
    // One caller measures; the others go on with the last verdict meanwhile.
    std::unique_lock lock(lagMutex_, std::try_to_lock);
    if (!lock.owns_lock()) {
        return at != 0 && lagOk_;
    }
    if (lagCheckedAt_.load() != at) {
        return lagOk_;  // measured by another caller just now
    }
    auto lag = measureLag();
    return lag && within(*lag);
}

std::optional<QueryResult> ReadRouter::readReplica(const Statement& statement, const Params& params,
                                                   bool confirmMiss, MissTest isMiss) {
    if (!replica_) {
        return std::nullopt;
    }
    if (!lagAcceptable()) {
        ++fallbacks_;
        return std::nullopt;
    }
    QueryResult r = replica_->execute(statement, params);
    if (r.failed()) {
        // Down, timed out, or an error the primary may not have: never answer from here.
        setState(State::Down, 0, r.error);
        ++fallbacks_;
        return std::nullopt;
    }
    if (confirmMiss && (isMiss ? isMiss(r) : r.noRows())) {
        auto lag = measureLag();
        if (!lag || !within(*lag)) {
            ++fallbacks_;
            ++missConfirms_;
            return std::nullopt;
        }
    }
    if (state_.load() == static_cast<int>(State::Down)) {
        setState(State::Ok, 0, {});
    }
    ++replicaReads_;
    return r;
}

QueryResult ReadRouter::read(const Statement& statement, const Params& params, bool confirmMiss,
                             MissTest isMiss) {
    if (auto r = readReplica(statement, params, confirmMiss, isMiss)) {
        return std::move(*r);
    }
    return readPrimary(statement, params);
}

QueryResult ReadRouter::readPrimary(const Statement& statement, const Params& params) {
    ++primaryReads_;
    return primary_.execute(statement, params);
}

}  // namespace postern::pg
