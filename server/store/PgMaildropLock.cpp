// The cluster-wide POP3 maildrop lock: lease rows in PostgreSQL, renewed by one thread.
#include "store/PgMaildropLock.h"

#include "core/EventLine.h"
#include "pg/Arrays.h"

#include <Poco/Logger.h>
#include <Poco/UUIDGenerator.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <vector>

namespace postern::store {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.store"); }

constexpr std::size_t RenewChunk = 500;

// Takes a free or expired row. "OR l.token = EXCLUDED.token": a retry of this very
// statement (the pool retries once after a dropped connection) finds its own row.
const pg::Statement LeaseAcquire{
    "postern_lease_acquire",
    "INSERT INTO maildrop_leases AS l (mailbox, node_id, token, acquired, expires)"
    " VALUES ($1, $2, $3::uuid, now(), now() + $4::bigint * interval '1 millisecond')"
    " ON CONFLICT (mailbox) DO UPDATE SET node_id = EXCLUDED.node_id, token = EXCLUDED.token,"
    "  acquired = EXCLUDED.acquired, expires = EXCLUDED.expires"
    " WHERE l.expires < now() OR l.token = EXCLUDED.token"
    " RETURNING l.token"};

// Renews only rows that still carry our token. No "expires > now()" condition: a lease that
// expired but that nobody took is still exclusively ours, and renewing it is right.
const pg::Statement LeaseRenew{
    "postern_lease_renew",
    "UPDATE maildrop_leases SET expires = now() + $3::bigint * interval '1 millisecond'"
    " WHERE mailbox = ANY ($1::text[]) AND token = ANY ($2::uuid[]) RETURNING token"};

// verify(): renews the row that carries our token or, when there is no row at all, writes
// it again. For the reason above a lease whose row is gone is still ours if nobody else has
// the mailbox now: a login elsewhere took the lapsed row, found the maildrop in use by this
// very session and released it (deleting the row), or the sweep deleted it after an outage.
// Such a session still holds its maildrop; without this its deletions were refused at QUIT.
// Only the session's own thread calls it (never racing its own release, which would
// resurrect a lease nobody holds); the renewal round only renews.
const pg::Statement LeaseReclaim{
    "postern_lease_reclaim",
    "WITH renewed AS ("
    "  UPDATE maildrop_leases SET expires = now() + $3::bigint * interval '1 millisecond'"
    "  WHERE mailbox = $1 AND token = $2::uuid RETURNING token),"
    " reclaimed AS ("
    "  INSERT INTO maildrop_leases (mailbox, node_id, token, acquired, expires)"
    "  SELECT $1, $4, $2::uuid, now(), now() + $3::bigint * interval '1 millisecond'"
    "  WHERE NOT EXISTS (SELECT 1 FROM renewed)"
    "  ON CONFLICT (mailbox) DO NOTHING RETURNING token)"
    " SELECT token FROM renewed UNION ALL SELECT token FROM reclaimed"};

const pg::Statement LeaseRelease{"postern_lease_release",
                                 "DELETE FROM maildrop_leases WHERE mailbox = $1 AND token = $2::uuid"};

// SKIP LOCKED: a row a login is taking over right now is left to it. Only rows lapsed for
// a whole lease more ($2 ms, this node's cluster.lock_lease: nodes share one value): a
// session that renews within that time after a database outage finds its row and keeps it.
const pg::Statement LeaseSweep{
    "postern_lease_sweep",
    "DELETE FROM maildrop_leases WHERE ctid = ANY (ARRAY("
    "   SELECT ctid FROM maildrop_leases WHERE expires < now() - $2::bigint * interval '1 millisecond'"
    "   LIMIT $1::integer FOR UPDATE SKIP LOCKED))"
    " AND expires < now() - $2::bigint * interval '1 millisecond'"};

}  // namespace

PgMaildropLock::PgMaildropLock(pg::Pool& pool, std::chrono::milliseconds lease, std::chrono::milliseconds renewInterval)
    : pool_(pool), lease_(lease), renewInterval_(renewInterval.count() > 0 ? renewInterval : lease / 3) {
    if (lease_ < std::chrono::seconds(3))
        throw std::invalid_argument("cluster.lock_lease must be at least 3s");
    thread_ = std::thread([this] { run(); });
}

PgMaildropLock::~PgMaildropLock() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

void PgMaildropLock::run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        wake_.wait_for(lock, renewInterval_, [this] { return stopping_; });
        if (stopping_)
            break;
        lock.unlock();
        try {
            renewAll();
        } catch (const std::exception& e) {
            logger().error(core::EventLine("lease.renew_fail").text("error", e.what()).str());
        }
        try {
            forgetPending();
        } catch (const std::exception& e) {
            logger().error(core::EventLine("lease.forget_fail").text("error", e.what()).str());
        }
        lock.lock();
    }
}

std::string PgMaildropLock::leaseKey(std::string_view mailbox) {
    if (!mailbox.empty() && mailbox.back() == '/') mailbox.remove_suffix(1);
    return std::string(mailbox);
}

PgMaildropLock::Acquisition PgMaildropLock::acquire(const std::string& spelled, const std::string& nodeId) {
    const std::string mailbox = leaseKey(spelled);
    Acquisition a;
    const std::string token = Poco::UUIDGenerator::defaultGenerator().createRandom().toString();
    pg::QueryResult r = pool_.execute(LeaseAcquire, {mailbox, nodeId, token, std::to_string(lease_.count())});
    if (r.failed()) {
        logger().warning(core::EventLine("lease.fail").add("mailbox", mailbox).text("error", r.error).str());
        forgetLater(mailbox, token, r);
        return a;  // TempFail
    }
    if (r.noRows()) {
        logger().information(core::EventLine("lease.busy").add("mailbox", mailbox).add("node", nodeId).str());
        a.status = Status::InUse;
        return a;
    }
    {
        std::lock_guard lock(mutex_);
        held_[token] = Held{mailbox, nodeId, false};
    }
    a.status = Status::Acquired;
    a.token = token;
    return a;
}

void PgMaildropLock::adopt(const std::string& token, const std::string& mailbox, const std::string& nodeId) {
    std::lock_guard lock(mutex_);
    held_[token] = Held{leaseKey(mailbox), nodeId, false};
}

void PgMaildropLock::markLost(const std::string& token, const char* why, std::optional<std::uint64_t> verifiedAt) {
    std::string mailbox;
    {
        std::lock_guard lock(mutex_);
        auto it = held_.find(token);
        if (it == held_.end() || it->second.lost)
            return;
        if (verifiedAt && it->second.verified != *verifiedAt)
            return;  // a verify() after the round's statement renewed or took it back
        it->second.lost = true;
        mailbox = it->second.mailbox;
    }
    logger().warning(core::EventLine("lease.lost").add("mailbox", mailbox).add("reason", why).str());
}

std::size_t PgMaildropLock::renewAll() {
    struct Live {
        std::string token, mailbox;
        std::uint64_t verified;
    };
    std::vector<Live> live;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [token, h] : held_)
            if (!h.lost)
                live.push_back({token, h.mailbox, h.verified});
    }
    std::size_t renewed = 0;
    for (std::size_t start = 0; start < live.size(); start += RenewChunk) {
        const std::size_t end = std::min(live.size(), start + RenewChunk);
        std::vector<std::string> tokens, mailboxes;
        for (std::size_t i = start; i < end; ++i) {
            tokens.push_back(live[i].token);
            mailboxes.push_back(live[i].mailbox);
        }
        pg::QueryResult r = pool_.execute(LeaseRenew, {pg::textArray(mailboxes), pg::textArray(tokens), std::to_string(lease_.count())});
        if (r.failed()) {
            // Not known to be lost: the row keeps its expiry; the next round tries again.
            logger().warning(
                core::EventLine("lease.renew_fail").add("leases", tokens.size()).text("error", r.error).str());
            continue;
        }
        std::set<std::string> back;
        for (const auto& row : r.rows)
            if (!row.empty() && row[0])
                back.insert(*row[0]);
        for (std::size_t i = start; i < end; ++i) {
            const Live& l = live[i];
            if (back.count(l.token)) {
                ++renewed;
                continue;
            }
            // Released meanwhile by its session: gone from held_, and markLost leaves it.
            // Else not renewed from now on; the session's verify() (at QUIT) takes it back
            // if the row is gone by then, or answers No if another holder has it.
            markLost(l.token, "renew_found_no_row", l.verified);
        }
    }
    return renewed;
}

core::Answer PgMaildropLock::verify(const std::string& token) {
    std::string mailbox, node;
    bool wasLost = false;
    {
        std::lock_guard lock(mutex_);
        auto it = held_.find(token);
        if (it == held_.end())
            return core::Answer::No;
        mailbox = it->second.mailbox;
        node = it->second.node;
        wasLost = it->second.lost;
    }
    pg::QueryResult r = pool_.execute(LeaseReclaim, {mailbox, token, std::to_string(lease_.count()), node});
    if (r.failed()) {
        logger().warning(core::EventLine("lease.verify_fail").add("mailbox", mailbox).text("error", r.error).str());
        if (r.mayHaveCommitted()) {
            // Its take-back may still commit: after release(), nobody would hold that row.
            std::lock_guard lock(mutex_);
            auto it = held_.find(token);
            if (it != held_.end()) it->second.reclaimUnsure = true;
        }
        return core::Answer::TempFail;
    }
    if (r.noRows()) {
        markLost(token, "taken_by_another_holder");
        return core::Answer::No;
    }
    {
        std::lock_guard lock(mutex_);
        auto it = held_.find(token);
        if (it != held_.end()) {
            ++it->second.verified;
            it->second.lost = false;  // renewed by the rounds again
        }
    }
    if (wasLost) logger().notice(core::EventLine("lease.reclaimed").add("mailbox", mailbox).str());
    return core::Answer::Yes;
}

bool PgMaildropLock::release(const std::string& token) {
    std::string mailbox;
    bool unsure = false;
    {
        std::lock_guard lock(mutex_);
        auto it = held_.find(token);
        if (it == held_.end())
            return false;
        mailbox = it->second.mailbox;
        unsure = it->second.reclaimUnsure;
        held_.erase(it);
    }
    pg::QueryResult r = pool_.execute(LeaseRelease, {mailbox, token});
    if (unsure || r.failed()) {
        // Deleted again later by the renewal thread (an orphan would answer [IN-USE] to the
        // user's next logins for up to a lease): a take-back that may commit after this
        // DELETE, or a DELETE that did not get through.
        std::lock_guard lock(mutex_);
        orphans_.push_back(Orphan{mailbox, token, std::chrono::steady_clock::now() + lease_});
    }
    if (r.failed()) {
        logger().warning(core::EventLine("lease.release_fail")
                             .add("mailbox", mailbox)
                             .text("error", r.error)
                             .add("note", "deleted_later")
                             .str());
        return false;
    }
    return true;
}

void PgMaildropLock::forgetLater(const std::string& mailbox, const std::string& token, const pg::QueryResult& failed) {
    if (!failed.mayHaveCommitted()) return;
    std::lock_guard lock(mutex_);
    orphans_.push_back(Orphan{leaseKey(mailbox), token, std::chrono::steady_clock::now() + lease_});
}

std::size_t PgMaildropLock::forgetPending() {
    std::vector<Orphan> work;
    {
        std::lock_guard lock(mutex_);
        // An entry past its time has lapsed by itself: drop it without asking.
        const auto now = std::chrono::steady_clock::now();
        std::erase_if(orphans_, [&](const Orphan& o) { return o.until <= now; });
        work.swap(orphans_);
        forgetting_ += work.size();  // still pending for pendingForgets() while tried
    }
    std::size_t deleted = 0, done = 0;
    // The untried rest waits for the next round.
    auto putBack = [&] {
        std::lock_guard lock(mutex_);
        orphans_.insert(orphans_.end(), work.begin() + static_cast<std::ptrdiff_t>(done), work.end());
        forgetting_ -= work.size();
    };
    try {
        // One call per entry, and the round ends at the first failure (the rest waits for
        // the next round): a database that cannot answer costs this thread, which must renew
        // the held leases in time, at most one pool call per round.
        for (; done < work.size(); ++done) {
            {
                std::lock_guard lock(mutex_);
                if (stopping_) break;
            }
            const Orphan& o = work[done];
            pg::QueryResult r = pool_.execute(LeaseRelease, {o.mailbox, o.token});
            if (r.failed()) break;
            if (r.ok()) {  // a row was deleted (NoRows: there was none)
                ++deleted;
                logger().information(core::EventLine("lease.orphan_removed").add("mailbox", o.mailbox).str());
            }
        }
    } catch (...) {
        putBack();  // and let the caller log it
        throw;
    }
    putBack();
    return deleted;
}

std::size_t PgMaildropLock::pendingForgets() const {
    std::lock_guard lock(mutex_);
    return orphans_.size() + forgetting_;
}

std::size_t PgMaildropLock::heldCount() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [token, h] : held_)
        if (!h.lost)
            ++n;
    return n;
}

std::optional<std::size_t> PgMaildropLock::sweep(std::size_t batch) {
    std::size_t removed = 0;
    for (int round = 0; round < 100; ++round) {
        pg::QueryResult r = pool_.execute(LeaseSweep, {std::to_string(batch), std::to_string(lease_.count())});
        if (r.failed()) {
            logger().warning(core::EventLine("lease.sweep_fail").text("error", r.error).str());
            return std::nullopt;
        }
        removed += r.affectedRows;
        if (r.affectedRows < batch) break;
    }
    return removed;
}

}  // namespace postern::store
