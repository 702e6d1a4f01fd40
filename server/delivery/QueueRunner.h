// The scheduler of outbound delivery: an in-memory schedule of the queued messages (by
// next-attempt time), worker threads that take due messages within the overall and
// per-domain concurrency limits, and a periodic rescan of the queue directory.
#pragma once

#include "config/ServerConfig.h"
#include "core/AccountSecurity.h"
#include "delivery/ConnectionPool.h"
#include "delivery/DeliveryAgent.h"
#include "queue/OutboundQueue.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace postern::delivery {

// Scheduling:
//  * start() scans envelope/ (so a restart, also after kill -9, resumes every message)
//    and starts delivery.max_workers threads plus one scanner thread.
//  * New mail is scheduled at once through OutboundQueue's enqueue listener (onEnqueued).
//  * A worker takes the earliest due message none of whose recipient domains is at
//    delivery.max_per_domain, delivers it (DeliveryAgent), and puts it back at its new
//    next-attempt time (or forgets it when it left the queue). While another due message
//    for the same domains is waiting it keeps its connections open and takes that one
//    next (RSET between messages), else it parks them idle in the ConnectionPool shared by
//    all workers (delivery.connection_cache_time_limit; 0: QUIT at once), where the next
//    worker delivering to the same next hop takes them (RSET).
//  * Wake-ups: workers sleep on wake_, the scanner on its own scannerWake_ (so a
//    notify_one for new mail always reaches a worker). A worker that takes a message and
//    sees another one runnable wakes one more worker (chain); a finishing worker goes on
//    with take() itself, so it wakes nobody unless it keeps going with the same domains
//    while it rescheduled a message. rescan() and stop() wake every worker.
//  * The scanner also closes pooled connections past their time limit: it sleeps until the
//    next scan or the pool's next expiry, whichever is first.
//  * Every delivery.scan_interval the scanner re-reads envelope/: the files are the
//    truth, so posternctl flush (next-attempt 0), hold, release and delete take effect
//    within one interval. Held messages are not scheduled.
// Thread-safe. The queue and agent outlive the runner. stop() (and the destructor) abort
// connections in progress (their recipients stay queued and are retried) and join.
class QueueRunner {
public:
    QueueRunner(const config::DeliveryConfig& config, queue::OutboundQueue& queue, DeliveryAgent& agent);
    ~QueueRunner();
    QueueRunner(const QueueRunner&) = delete;
    QueueRunner& operator=(const QueueRunner&) = delete;

    // For tests: runs in every rescan between reading envelope/ and applying what it read
    // (what happens meanwhile is newer than what was read). Set before start().
    void setScanHook(std::function<void()> hook) { scanHook_ = std::move(hook); }

    // Messages whose submitter (envelope "auth") is held (compromised-account detection)
    // stay queued and are not taken until the hold is lifted. Set before start().
    void setHold(const core::AccountHold* hold) { hold_ = hold; }

    void start();
    void stop();

    // A message was just queued (called from OutboundQueue::enqueue; must be quick).
    void onEnqueued(const queue::QueueEnvelope& envelope);

    // For tests and logs: messages scheduled (not held, not in progress) and in progress.
    std::size_t scheduledCount() const;
    // Seconds since the oldest message waiting for (or in) delivery arrived; 0 if none.
    // (Queue ids start with their arrival time, see OutboundQueue::newId.)
    double oldestAgeSeconds() const;

private:
    using Time = std::chrono::system_clock::time_point;
    struct Item {
        Time due;
        std::vector<std::string> domains;  // distinct, lower-case
        std::string submitter;             // envelope "auth" (empty: not authenticated)
    };
    bool held(const Item& item) const { return hold_ && !item.submitter.empty() && hold_->isHeld(item.submitter); }

    void workerLoop(std::size_t index);
    void scannerLoop();
    void rescan();
    void schedule(const queue::QueueEnvelope& envelope);  // lock held
    void noteChange(const std::string& id);                // lock held: for a rescan in progress
    void unschedule(const std::string& id);                // lock held
    bool runnable(const Item& item) const;                 // lock held
    void acquire(const std::string& id, const Item& item); // lock held
    void release(const std::string& id);                   // lock held
    // Blocks until a message is due and runnable (true) or the runner stops (false).
    bool take(std::string& id);
    // Finishes `id` (reschedules `after`), then takes a due message with the same
    // domains if there is one (connection reuse).
    bool finishAndTakeSame(const std::string& id, const std::optional<queue::QueueEnvelope>& after, std::string& next);
    void finish(const std::string& id, const std::optional<queue::QueueEnvelope>& after);  // lock held
    bool anyRunnable(Time now) const;                       // lock held: a due, runnable, not held message
    void kickScanner();                                     // the pool has something to expire

    const config::DeliveryConfig& config_;
    queue::OutboundQueue& queue_;
    DeliveryAgent& agent_;
    const core::AccountHold* hold_ = nullptr;

    mutable std::mutex mutex_;
    std::condition_variable wake_;         // workers only
    std::condition_variable scannerWake_;  // the scanner only: stop, pool to sweep
    bool poolKick_ = false;                // guarded by mutex_
    bool stopping_ = false;
    bool started_ = false;
    std::map<std::string, Item> pending_;          // id -> scheduled item
    std::set<std::pair<Time, std::string>> byDue_; // (due, id) of pending_
    std::map<std::string, Item> running_;          // id -> item being delivered
    std::map<std::string, int> perDomain_;         // domain -> messages in progress
    // A rescan reads envelope/ unlocked; what is queued or rescheduled meanwhile is newer
    // than what it read and is left as it is (else a stale due time would replace a new
    // one, or new mail be forgotten until the next scan).
    bool scanning_ = false;
    std::set<std::string> changedInScan_;
    std::function<void()> scanHook_;

    std::vector<std::thread> threads_;
    ConnectionPool pool_;                                   // idle connections of all workers
    std::vector<std::unique_ptr<ConnectionCache>> caches_;  // one per worker (abort on stop)
};

}  // namespace postern::delivery
