// Write-behind for POP-before-SMTP grants: queue on a failed write, honour the queue
// locally, write it through with the original expiry once the shared store is back.
#include "grants/WriteBehindGrantStore.h"

#include "core/EventLine.h"
#include "grants/GrantLog.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

namespace postern::grants {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.grants"); }

}  // namespace

WriteBehindGrantStore::WriteBehindGrantStore(DurableGrantStore& durable, WriteBehindSettings settings,
                                             core::EventCounters& counters, Clock clock)
    : durable_(durable), settings_(settings), counters_(counters), clock_(core::clockOrSystem(std::move(clock))) {
    if (settings_.retryFirst <= std::chrono::milliseconds::zero() || settings_.retryMax <= std::chrono::milliseconds::zero())
        throw std::invalid_argument("grant retry intervals must be positive");
}

WriteBehindGrantStore::~WriteBehindGrantStore() {
    stop();
    std::map<Slot, Pending> left;
    {
        std::lock_guard lock(mutex_);
        left.swap(pending_);
        size_ = 0;
    }
    const auto now = clock_();
    for (const auto& [slot, p] : left) {
        const std::string& key = slot.first;
        if (p.grant.expires <= now) {
            counters_.count("grant", "dropped_expired");
            continue;
        }
        counters_.count("grant", "dropped_shutdown");
        logger().warning(core::EventLine("grant.dropped")
                             .add("ip", key)
                             .add("user", p.grant.user)
                             .add("expires", isoUtc(p.grant.expires))
                             .add("reason", "shutdown")
                             .str());
    }
}

bool WriteBehindGrantStore::grant(const core::ClientAddress& client, const core::Grant& grant) {
    const std::string key = durable_.keyText(client);
    const auto now = clock_();
    if (durable_.grant(client, grant)) {
        if (size_.load() > 0) {
            {
                // The newer login is stored: a queued older grant of the user is obsolete.
                std::lock_guard lock(mutex_);
                if (pending_.erase(Slot{key, grant.user}))
                    size_ = pending_.size();
            }
            kick();  // the store answers again: write the rest of the queue now
        }
        return true;
    }
    if (settings_.queueLimit == 0)
        return false;

    Pending p;
    p.grant = grant;
    p.grant.expires = now + durable_.lifetime();
    p.created = now;
    std::size_t queuedNow = 0;
    std::size_t expired = 0;
    bool full = false;
    {
        std::lock_guard lock(mutex_);
        p.seq = ++nextSeq_;
        const Slot slot{key, grant.user};
        if (pending_.count(slot) == 0 && pending_.size() >= settings_.queueLimit) {
            expired = dropExpiredLocked(now);
            full = pending_.size() >= settings_.queueLimit;
        }
        if (!full) {
            // A newer login of the user from the key replaces its queued grant.
            pending_.insert_or_assign(slot, p);
            wake_.notify_all();
        }
        size_ = pending_.size();
        queuedNow = pending_.size();
    }
    for (std::size_t i = 0; i < expired; ++i)
        counters_.count("grant", "dropped_expired");
    if (full) {
        counters_.count("grant", "dropped_full");
        logger().error(core::EventLine("grant.dropped")
                           .add("ip", key)
                           .add("user", grant.user)
                           .add("reason", "queue_full")
                           .add("queued", queuedNow)
                           .add("limit", settings_.queueLimit)
                           .str());
        return false;
    }
    counters_.count("grant", "queued");
    logger().warning(core::EventLine("grant.queued")
                         .add("ip", key)
                         .add("user", grant.user)
                         .add("expires", isoUtc(p.grant.expires))
                         .add("queued", queuedNow)
                         .add("state", "pending_write_through")
                         .str());
    return true;
}

std::vector<core::Grant> WriteBehindGrantStore::liveFor(const std::string& key) {
    std::vector<core::Grant> live;
    std::size_t expired = 0;
    {
        std::lock_guard lock(mutex_);
        const auto now = clock_();
        for (auto it = pending_.lower_bound(Slot{key, std::string()}); it != pending_.end() && it->first.first == key;) {
            if (it->second.grant.expires > now) {
                live.push_back(it->second.grant);
                ++it;
            } else {
                it = pending_.erase(it);
                ++expired;
            }
        }
        size_ = pending_.size();
    }
    for (std::size_t i = 0; i < expired; ++i)
        counters_.count("grant", "dropped_expired");
    return live;
}

core::Answer WriteBehindGrantStore::lookup(const core::ClientAddress& client, const std::string& sender,
                                           core::Grant* out) {
    std::vector<core::Grant> queued;
    const std::string key = durable_.keyText(client);
    if (size_.load() > 0) {
        queued = liveFor(key);
        for (const core::Grant& g : queued) {
            if (!core::grantBelongsTo(g, sender)) continue;
            logger().information(
                core::EventLine("grant.use").add("ip", key).add("user", g.user).add("src", "pending").str());
            if (out)
                *out = g;
            return core::Answer::Yes;
        }
    }
    core::Grant stored;
    const core::Answer a = durable_.lookup(client, sender, &stored);
    if (a != core::Answer::TempFail && size_.load() > 0)
        kick();
    if (a == core::Answer::TempFail || queued.empty() ||
        (a == core::Answer::Yes && core::grantBelongsTo(stored, sender))) {
        if (a == core::Answer::Yes && out)
            *out = std::move(stored);
        return a;
    }
    // Neither answer is the sender's own: the one that expires last, as the store would pick.
    const std::size_t fromQueue = queued.size();
    if (a == core::Answer::Yes)
        queued.push_back(std::move(stored));
    const core::Grant* g = core::pickGrant(queued, sender);
    if (g < queued.data() + fromQueue)  // the store's answer was logged by the store
        logger().information(
            core::EventLine("grant.use").add("ip", key).add("user", g->user).add("src", "pending").str());
    if (out)
        *out = *g;
    return core::Answer::Yes;
}

std::size_t WriteBehindGrantStore::dropExpiredLocked(std::chrono::system_clock::time_point now) {
    std::size_t n = 0;
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.grant.expires <= now) {
            it = pending_.erase(it);
            ++n;
        } else {
            ++it;
        }
    }
    size_ = pending_.size();
    return n;
}

WriteBehindGrantStore::FlushResult WriteBehindGrantStore::flush() {
    FlushResult result;
    std::vector<std::pair<Slot, Pending>> batch;
    {
        std::lock_guard lock(mutex_);
        batch.assign(pending_.begin(), pending_.end());
    }
    // Soonest expiry first: those are the grants a long outage is about to cost.
    std::sort(batch.begin(), batch.end(),
              [](const auto& a, const auto& b) { return a.second.grant.expires < b.second.grant.expires; });
    // Removes the entry unless a newer login replaced it meanwhile (that one is written next).
    auto settle = [this](const Slot& slot, std::uint64_t seq) {
        std::lock_guard lock(mutex_);
        auto it = pending_.find(slot);
        if (it != pending_.end() && it->second.seq == seq)
            pending_.erase(it);
        size_ = pending_.size();
    };
    for (const auto& [slot, p] : batch) {
        const std::string& key = slot.first;
        if (p.grant.expires <= clock_()) {
            settle(slot, p.seq);
            ++result.expired;
            counters_.count("grant", "dropped_expired");
            continue;
        }
        const DurableGrantStore::WriteResult r = durable_.writeThrough(key, p.grant, p.created);
        if (r == DurableGrantStore::WriteResult::Failed) {
            result.failed = true;
            break;
        }
        settle(slot, p.seq);
        const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(clock_() - p.created);
        if (r == DurableGrantStore::WriteResult::Revoked) {
            // Revoked since the login (an account disabled, posternctl grant revoke): it
            // must not come back to life.
            ++result.revoked;
            counters_.count("grant", "dropped_revoked");
            logger().notice(core::EventLine("grant.dropped")
                                .add("ip", key)
                                .add("user", p.grant.user)
                                .add("delay", late.count() / 1000, "s")
                                .add("reason", "revoked")
                                .str());
            continue;
        }
        ++result.written;
        counters_.count("grant", "written_through");
        logger().notice(core::EventLine("grant.written_through")
                            .add("ip", key)
                            .add("user", p.grant.user)
                            .add("expires", isoUtc(p.grant.expires))
                            .add("delay", late.count() / 1000, "s")
                            .add("result", r == DurableGrantStore::WriteResult::Superseded ? "superseded" : "written")
                            .str());
    }
    return result;
}

std::size_t WriteBehindGrantStore::queued() const { return size_.load(); }

void WriteBehindGrantStore::kick() {
    std::lock_guard lock(mutex_);
    kicked_ = true;
    wake_.notify_all();
}

void WriteBehindGrantStore::start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable())
        return;
    stopping_ = false;
    thread_ = std::thread([this] { run(); });
}

void WriteBehindGrantStore::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        wake_.notify_all();
    }
    if (thread_.joinable())
        thread_.join();
}

void WriteBehindGrantStore::run() {
    const auto first = std::min(settings_.retryFirst, settings_.retryMax);
    auto backoff = first;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        wake_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        if (stopping_)
            break;
        // Never closer together than `first` (a store that answers lookups but refuses
        // the write must not turn kicks into a busy loop)...
        if (wake_.wait_for(lock, first, [this] { return stopping_; }))
            break;
        // ...then the rest of the backoff, cut short when the store is seen answering again.
        if (backoff > first &&
            wake_.wait_for(lock, backoff - first, [this] { return stopping_ || kicked_; }) && stopping_)
            break;
        kicked_ = false;
        lock.unlock();
        FlushResult r;
        try {
            r = flush();
        } catch (const std::exception& e) {
            logger().error(core::EventLine("grant.retry_error").text("error", e.what()).str());
            r.failed = true;
        }
        lock.lock();
        backoff = r.failed ? std::min(backoff * 2, settings_.retryMax) : first;
    }
}

}  // namespace postern::grants
