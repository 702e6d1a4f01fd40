// The cluster-wide POP3 maildrop lock: a lease row per mailbox in PostgreSQL (table
// maildrop_leases, schema/postgres/002_cluster.sql), so that two nodes sharing one mail root
// never open the same maildrop at once (RFC 1939 3: exclusive access to the maildrop).
#pragma once

#include "core/UserDirectory.h"
#include "pg/Pool.h"

#include <chrono>
#include <optional>
#include <string_view>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace postern::store {

// A lease is held by whoever wrote the mailbox's row while expires > now() (the database's
// clock). acquire() takes a free or expired row; a background thread renews every held lease
// every lease/3 (one statement per 500 leases), so a lease outlives any session however idle;
// release() deletes it. A node that dies stops renewing: its leases lapse within one lease
// time (cluster.lock_lease), and then another node may open the maildrop.
//
// A lease found gone at renewal (expired during a long outage and taken by another node, or
// deleted) is no longer renewed and logged (event=lease.lost); holders check with verify()
// before anything irreversible, which renews it, takes back a row that is gone (nobody else
// has the mailbox: renewed by the rounds again), or answers No when another holder has it.
//
// Thread-safe. Owns one renewal thread (started by the constructor, stopped and joined by
// the destructor). Destroying it while leases are held does not release them: they lapse
// like a crashed node's. The pool must outlive this object.
class PgMaildropLock {
public:
    enum class Status {
        Acquired,  // token is set; release(token) when done
        InUse,     // another session (this node or another) holds a live lease: -ERR [IN-USE]
        TempFail,  // PostgreSQL cannot answer: -ERR [SYS/TEMP]
    };
    struct Acquisition {
        Status status = Status::TempFail;  // fail closed
        std::string token;
    };

    // lease: cluster.lock_lease (its default lives in the key table only; at least 3s so
    // lease/3 leaves time to renew).
    // renewInterval: 0 = lease / 3. Throws std::invalid_argument on a bad lease.
    explicit PgMaildropLock(pg::Pool& pool, std::chrono::milliseconds lease,
                            std::chrono::milliseconds renewInterval = std::chrono::milliseconds(0));
    ~PgMaildropLock();
    PgMaildropLock(const PgMaildropLock&) = delete;
    PgMaildropLock& operator=(const PgMaildropLock&) = delete;

    // Takes the lease of `mailbox` for `nodeId` (kept in the row for operators). The token
    // is random (a UUID) and chosen before the statement, so the pool's retry after a lost
    // reply finds its own row instead of answering InUse.
    // `mailbox` as the backend spells it; the lease is taken on leaseKey(mailbox).
    Acquisition acquire(const std::string& mailbox, const std::string& nodeId);
    // The row key of a mailbox: "d/alice/" and "d/alice" name one maildir
    // (MaildirStore::maildirPath), so they must be one lease across nodes.
    static std::string leaseKey(std::string_view mailbox);

    // Holds (renews, verifies, releases) a lease the caller wrote itself with `token` in
    // another statement (app/ClusterPop3Login: the login's one statement takes it) for
    // `nodeId`.
    void adopt(const std::string& token, const std::string& mailbox, const std::string& nodeId);

    // Renews the lease now and says whether it is still ours: Yes (renewed, or its row was
    // gone and is written again: also a lease the renewal round found gone), No (another
    // holder has the mailbox, or not a token of this object), TempFail (PostgreSQL cannot
    // answer). Called only by the session holding the token (see LeaseReclaim).
    core::Answer verify(const std::string& token);

    // Deletes the lease (only if it still carries this token) and stops renewing it. false if
    // PostgreSQL could not be told (the lease then lapses within one lease time) or the
    // token is unknown.
    bool release(const std::string& token);

    // After a statement that wrote a lease with `token` failed: its commit may still have
    // happened (a timeout or a connection lost after COMMIT), and such an orphan would answer
    // "in use" to the user's next logins for up to a lease time. Unless `failed` shows the
    // statement never reached the server (or was rolled back), the row is deleted later by
    // the renewal thread, not now: after a timeout the pool refuses calls for a while, and a
    // login waiting for it would only get slower. Kept until PostgreSQL answers or one lease
    // time has passed (the row has lapsed by then anyway).
    void forgetLater(const std::string& mailbox, const std::string& token, const pg::QueryResult& failed);
    // One round of those deletions (what the thread runs after each renewal), ending at the
    // first call PostgreSQL does not answer; returns the rows deleted. Public for tests.
    std::size_t forgetPending();
    std::size_t pendingForgets() const;

    // One renewal round (what the thread runs every renewInterval). Returns the leases
    // renewed; public for tests.
    std::size_t renewAll();

    // Deletes leases of every node lapsed for more than one lease time (a crashed node's, an
    // orphan nobody holds) in batches of `batch`; what the cluster sweep runs. nullopt if
    // PostgreSQL failed.
    std::optional<std::size_t> sweep(std::size_t batch = 1000);

    // Leases this object holds and still believes valid (tests, metrics).
    std::size_t heldCount() const;
    std::chrono::milliseconds lease() const { return lease_; }

private:
    struct Held {
        std::string mailbox;
        std::string node;  // written into the row verify() takes back
        bool lost = false;  // not renewed by the rounds (until verify() says Yes)
        std::uint64_t verified = 0;  // verify() Yes answers: a round's older finding yields
        bool reclaimUnsure = false;  // a take-back whose commit is unknown: release forgets it later
    };

    void run();
    // verifiedAt: the Held::verified a renewal round saw; a verify() since decides instead.
    void markLost(const std::string& token, const char* why, std::optional<std::uint64_t> verifiedAt = {});

    pg::Pool& pool_;
    const std::chrono::milliseconds lease_;
    const std::chrono::milliseconds renewInterval_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;                 // guarded by mutex_
    std::map<std::string, Held> held_;      // token -> lease; guarded by mutex_
    struct Orphan {
        std::string mailbox, token;
        std::chrono::steady_clock::time_point until;
    };
    std::vector<Orphan> orphans_;           // forgetLater(); guarded by mutex_
    std::size_t forgetting_ = 0;            // taken out of orphans_ by a running round; guarded by mutex_
    std::thread thread_;
};

}  // namespace postern::store
