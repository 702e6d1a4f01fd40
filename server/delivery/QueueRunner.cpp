#include "delivery/QueueRunner.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <cctype>

namespace postern::delivery {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.delivery"); }

std::vector<std::string> domainsOf(const queue::QueueEnvelope& e) {
    std::vector<std::string> out;
    for (const auto& r : e.recipients) {
        auto at = r.rfind('@');
        std::string d = at == std::string::npos ? std::string() : r.substr(at + 1);
        std::transform(d.begin(), d.end(), d.begin(), [](unsigned char c) { return std::tolower(c); });
        if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

QueueRunner::QueueRunner(const config::DeliveryConfig& config, queue::OutboundQueue& queue, DeliveryAgent& agent)
    : config_(config),
      queue_(queue),
      agent_(agent),
      pool_(config.connectionCacheTimeLimit, config.connectionReuseTimeLimit) {}

QueueRunner::~QueueRunner() { stop(); }

void QueueRunner::start() {
    {
        std::lock_guard lock(mutex_);
        if (started_) return;
        started_ = true;
    }
    rescan();
    for (int i = 0; i < config_.maxWorkers; ++i) caches_.push_back(std::make_unique<ConnectionCache>(&pool_));
    for (int i = 0; i < config_.maxWorkers; ++i)
        threads_.emplace_back([this, i] { workerLoop(static_cast<std::size_t>(i)); });
    threads_.emplace_back([this] { scannerLoop(); });
    logger().information(core::EventLine("delivery.start")
                             .add("workers", config_.maxWorkers)
                             .add("per_domain", config_.maxPerDomain)
                             .add("connection_cache", config_.connectionCacheTimeLimit.count(), "ms")
                             .add("scheduled", scheduledCount())
                             .str());
}

void QueueRunner::stop() {
    {
        std::lock_guard lock(mutex_);
        if (!started_ || stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    scannerWake_.notify_all();
    // Connections in progress are cut: their recipients stay in the queue (temporary
    // failure), which is safe; waiting for a 10-minute data timeout at shutdown is not.
    // Idle pooled ones too (the pool takes no more from now on).
    pool_.abortAll();
    for (auto& c : caches_) c->abortAll();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
    for (auto& c : caches_) c->closeAll();
    pool_.closeAll();
    logger().information(core::EventLine("delivery.stop").str());
}

std::size_t QueueRunner::scheduledCount() const {
    std::lock_guard lock(mutex_);
    return pending_.size() + running_.size();
}

void QueueRunner::onEnqueued(const queue::QueueEnvelope& envelope) {
    {
        std::lock_guard lock(mutex_);
        noteChange(envelope.id);
        schedule(envelope);
    }
    wake_.notify_one();
}

void QueueRunner::noteChange(const std::string& id) {
    if (scanning_) changedInScan_.insert(id);
}

void QueueRunner::schedule(const queue::QueueEnvelope& e) {
    if (running_.count(e.id)) return;  // the worker reschedules it when done
    unschedule(e.id);
    if (e.hold || e.recipients.empty()) return;
    Item item{e.nextAttempt, domainsOf(e), e.authUser};
    byDue_.emplace(item.due, e.id);
    pending_.emplace(e.id, std::move(item));
}

void QueueRunner::unschedule(const std::string& id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    byDue_.erase({it->second.due, id});
    pending_.erase(it);
}

void QueueRunner::rescan() {
    {
        std::lock_guard lock(mutex_);
        scanning_ = true;
        changedInScan_.clear();
    }
    std::vector<queue::QueueEntry> entries;
    try {
        queue_.refreshStats();
        entries = queue_.list();
        if (scanHook_) scanHook_();
    } catch (...) {
        std::lock_guard lock(mutex_);
        scanning_ = false;
        throw;
    }
    {
        std::lock_guard lock(mutex_);
        std::set<std::string> present;
        for (const auto& entry : entries) {
            present.insert(entry.envelope.id);
            if (!changedInScan_.count(entry.envelope.id)) schedule(entry.envelope);
        }
        // Deleted behind our back (posternctl queue delete): forget them.
        for (auto it = pending_.begin(); it != pending_.end();) {
            if (present.count(it->first) || changedInScan_.count(it->first)) {
                ++it;
                continue;
            }
            byDue_.erase({it->second.due, it->first});
            it = pending_.erase(it);
        }
        scanning_ = false;
        changedInScan_.clear();
    }
    wake_.notify_all();
}

void QueueRunner::kickScanner() {
    {
        std::lock_guard lock(mutex_);
        poolKick_ = true;
    }
    scannerWake_.notify_one();
}

void QueueRunner::scannerLoop() {
    using Steady = std::chrono::steady_clock;
    auto nextScan = Steady::now() + config_.scanInterval;
    while (true) {
        // Idle pooled connections past their limit: QUIT (outside mutex_). A park() after
        // this sweep sets poolKick_, so the wait below cannot miss it.
        std::optional<Steady::time_point> expiry = pool_.sweep();
        {
            std::unique_lock lock(mutex_);
            Steady::time_point until = expiry ? std::min(nextScan, *expiry) : nextScan;
            scannerWake_.wait_until(lock, until, [this] { return stopping_ || poolKick_; });
            poolKick_ = false;
            if (stopping_) return;
        }
        if (Steady::now() < nextScan) continue;
        nextScan = Steady::now() + config_.scanInterval;
        try {
            rescan();
        } catch (const std::exception& e) {
            logger().error(core::EventLine("delivery.scan_fail").text("error", e.what()).str());
        }
    }
}

bool QueueRunner::runnable(const Item& item) const {
    for (const auto& d : item.domains) {
        auto it = perDomain_.find(d);
        if (it != perDomain_.end() && it->second >= config_.maxPerDomain) return false;
    }
    return true;
}

void QueueRunner::acquire(const std::string& id, const Item& item) {
    for (const auto& d : item.domains) ++perDomain_[d];
    running_.emplace(id, item);
}

void QueueRunner::release(const std::string& id) {
    auto it = running_.find(id);
    if (it == running_.end()) return;
    for (const auto& d : it->second.domains)
        if (--perDomain_[d] <= 0) perDomain_.erase(d);
    running_.erase(it);
}

bool QueueRunner::take(std::string& id) {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        auto now = std::chrono::system_clock::now();
        for (auto it = byDue_.begin(); it != byDue_.end() && it->first <= now; ++it) {
            const Item& item = pending_.at(it->second);
            if (!runnable(item) || held(item)) continue;
            id = it->second;
            Item taken = item;
            byDue_.erase(it);
            pending_.erase(id);
            acquire(id, taken);
            // Several messages became runnable at once (a rescan, a burst): one more worker
            // takes the next, and so on, rather than all of them waking for each message.
            bool more = anyRunnable(now);
            lock.unlock();
            if (more) wake_.notify_one();
            return true;
        }
        // Nothing runnable now: sleep until the next due time, a new message, a finished
        // delivery (frees a domain slot) or the next scan (a released hold is seen then).
        Time until = now + config_.scanInterval;
        for (const auto& [due, pid] : byDue_) {
            if (due > now) {
                until = std::min(until, due);
                break;
            }
        }
        wake_.wait_until(lock, until);
    }
    return false;
}

void QueueRunner::finish(const std::string& id, const std::optional<queue::QueueEnvelope>& after) {
    release(id);
    noteChange(id);
    if (after) schedule(*after);
}

bool QueueRunner::finishAndTakeSame(const std::string& id, const std::optional<queue::QueueEnvelope>& after,
                                    std::string& next) {
    std::lock_guard lock(mutex_);
    auto it = running_.find(id);
    std::vector<std::string> domains = it != running_.end() ? it->second.domains : std::vector<std::string>{};
    finish(id, after);
    if (stopping_) return false;
    auto now = std::chrono::system_clock::now();
    for (auto d = byDue_.begin(); d != byDue_.end() && d->first <= now; ++d) {
        const Item& item = pending_.at(d->second);
        if (d->second == id || item.domains != domains || !runnable(item) || held(item)) continue;
        next = d->second;
        Item taken = item;
        byDue_.erase(d);
        pending_.erase(next);
        acquire(next, taken);
        // This worker goes on with the same domains (their slots stay taken), so it will not
        // look at the schedule in take(): if it rescheduled `id`, the sleeping workers' wait
        // deadline may be later than its new due time, or other work is runnable now: wake one.
        if (pending_.count(id) || anyRunnable(now)) wake_.notify_one();
        return true;
    }
    // Nothing to go on with: this worker calls take() next, which sees the slots just freed,
    // the rescheduled message and anything else runnable (and chains further wake-ups).
    return false;
}

bool QueueRunner::anyRunnable(Time now) const {
    for (auto it = byDue_.begin(); it != byDue_.end() && it->first <= now; ++it) {
        const Item& item = pending_.at(it->second);
        if (runnable(item) && !held(item)) return true;
    }
    return false;
}

void QueueRunner::workerLoop(std::size_t index) {
    ConnectionCache& connections = *caches_[index];
    std::string id;
    while (take(id)) {
        while (true) {
            std::optional<queue::QueueEnvelope> after;
            try {
                after = agent_.deliver(id, connections);
            } catch (const std::exception& e) {
                logger().error(core::EventLine::inSession(id, "delivery.exception").text("error", e.what()).str());
                // Back off on disk too (a rescan reads the files: an in-memory back-off was
                // replaced by the old due time at the next scan, a retry every scan_interval).
                const auto retry = std::chrono::system_clock::now() + config_.retrySchedule.front();
                try {
                    after = queue_.modifyEnvelope(id, [&](queue::QueueEnvelope& e) {
                        e.nextAttempt = retry;
                        return true;
                    });
                    if (!after) after = queue_.readEnvelope(id);
                    if (after) after->nextAttempt = retry;
                } catch (...) {
                    after.reset();  // the next scan finds it on disk
                }
            }
            std::string next;
            if (!finishAndTakeSame(id, after, next)) break;
            id = next;
        }
        // Idle in the shared pool for the next message to the same next hop (any worker),
        // or QUIT when the pool is off.
        if (connections.parkAll()) kickScanner();
    }
}

double QueueRunner::oldestAgeSeconds() const {
    std::uint32_t oldest = 0;
    auto consider = [&oldest](const std::string& id) {
        if (id.size() < 8) return;
        std::uint32_t secs = 0;
        for (std::size_t k = 0; k < 8; ++k) {
            char ch = id[k];
            std::uint32_t v = (ch >= '0' && ch <= '9') ? std::uint32_t(ch - '0') : std::uint32_t(ch - 'a' + 10);
            secs = (secs << 4) | (v & 0xf);
        }
        if (oldest == 0 || secs < oldest) oldest = secs;
    };
    {
        std::lock_guard lock(mutex_);
        for (const auto& [id, item] : pending_) consider(id);
        for (const auto& [id, item] : running_) consider(id);
    }
    if (oldest == 0) return 0.0;
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return now > static_cast<long long>(oldest) ? static_cast<double>(now - oldest) : 0.0;
}

}  // namespace postern::delivery
