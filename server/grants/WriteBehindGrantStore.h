// POP-before-SMTP grants that survive an outage of the shared store: a grant that cannot be
// written is held on this node (and honoured here at once) and written through later.
#pragma once

#include "core/Clock.h"
#include "core/EventCounters.h"
#include "core/GrantStore.h"
#include "grants/DurableGrantStore.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <map>
#include <utility>
#include <vector>

namespace postern::grants {

struct WriteBehindSettings {
    // cluster.grant_retry_queue: grants held for a later write at most (0 = none: a grant
    // that cannot be written is lost, the login's address may not relay).
    std::size_t queueLimit = 0;  // set from cluster.grant_retry_queue
    // First retry this long after a grant is queued, doubling after each failed attempt up
    // to retryMax (cluster.grant_retry_backoff_max); never closer together than retryFirst.
    // retryFirst is not a key (the key's doc says "from 1s"); retryMax is.
    std::chrono::milliseconds retryFirst{1000};
    std::chrono::milliseconds retryMax{};  // set from cluster.grant_retry_backoff_max

    bool operator==(const WriteBehindSettings&) const = default;
};

// Decorates the durable (shared) store:
//  grant():  written to the durable store as before; if that fails, the grant (expiry
//            now + lifetime, fixed now) is queued on this node: logged event=grant.queued,
//            true (the login's address may relay through this node at once). A queue full
//            of live grants: event=grant.dropped reason=queue_full, false (as before).
//            A grant written directly replaces a queued one for the same key and user.
//  lookup(): a queued live grant for the key that the MAIL FROM belongs to answers Yes (even
//            while the store is down); otherwise the durable store is asked, and the
//            address's queued grants count with what it answers (core::pickGrant). If it
//            cannot tell, TempFail (a queued grant of another user of the address cannot say
//            whether this sender's own grant is stored).
//  flush():  writes queued grants through with their original expiry (never extended; a
//            later grant already stored wins). event=grant.written_through per grant; a
//            grant that expired while queued is dropped without a log line (counted); one
//            revoked since its login (posternctl, an account disabled) is dropped, not
//            written: event=grant.dropped reason=revoked. Until then this node honours it
//            (at most grant_retry_backoff_max after the database answers again).
//            Called by the retry thread (start()) with backoff, and at once when the
//            durable store answers again.
// Counters (core::EventCounters, event "grant"): queued, written_through, dropped_full,
// dropped_expired, dropped_revoked, dropped_shutdown. Thread-safe. Logs on "postern.grants".
class WriteBehindGrantStore final : public core::GrantStore {
public:
    using Clock = core::Clock;

    // `durable` and `counters` must outlive this object. Throws std::invalid_argument on
    // retry intervals <= 0.
    WriteBehindGrantStore(DurableGrantStore& durable, WriteBehindSettings settings,
                          core::EventCounters& counters = core::NullEventCounters::instance(), Clock clock = {});
    // Stops the retry thread; grants still queued are logged as dropped (reason=shutdown).
    ~WriteBehindGrantStore() override;

    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override;
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& client, const std::string& sender, core::Grant* out) override;

    struct FlushResult {
        std::size_t written = 0;   // written through (or superseded by a later stored grant)
        std::size_t expired = 0;   // dropped: expired while queued
        std::size_t revoked = 0;   // dropped: revoked since the login (not written)
        bool failed = false;       // the store could not be reached; the rest stays queued
    };
    // One pass over the queue (stops at the first failed write).
    FlushResult flush();

    // The retry thread: start() once; stop() (or the destructor) ends it.
    void start();
    void stop();

    // The durable store's database answers again (pg::Pool's up listener): the next pass
    // runs without waiting out the rest of its backoff. Cheap; any thread.
    void databaseUp() { kick(); }

    // Grants held for a later write (the postern_grants_queued gauge).
    std::size_t queued() const;

private:
    struct Pending {
        core::Grant grant;
        std::chrono::system_clock::time_point created;
        std::uint64_t seq = 0;  // which login queued it (a newer one may replace it mid-write)
    };

    using Slot = std::pair<std::string, std::string>;  // (key, user)
    std::vector<core::Grant> liveFor(const std::string& key);
    std::size_t dropExpiredLocked(std::chrono::system_clock::time_point now);
    void kick();
    void run();

    DurableGrantStore& durable_;
    const WriteBehindSettings settings_;
    core::EventCounters& counters_;
    Clock clock_;

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::map<Slot, Pending> pending_;  // ordered: the grants of one key are adjacent
    std::atomic<std::size_t> size_{0};  // pending_.size(), read without the lock on the lookup path
    std::uint64_t nextSeq_ = 0;
    bool kicked_ = false;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace postern::grants
