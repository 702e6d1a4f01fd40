// A fixed-size, thread-safe pool of PostgreSQL connections that replaces broken ones.
#include "pg/Pool.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>

namespace postern::pg {

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.pg");
    return l;
}

}  // namespace

Pool::Pool(ConnectSettings settings) : settings_(std::move(settings)) {
    const std::size_t n = settings_.poolSize == 0 ? 1 : settings_.poolSize;
    slots_.resize(n);
    free_.reserve(n);
    for (std::size_t i = n; i > 0; --i) {
        free_.push_back(i - 1);
    }
}

Pool::~Pool() = default;

std::size_t Pool::openConnections() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    // Only free slots can be read safely; a borrowed slot counts as open.
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        bool isFree = std::find(free_.begin(), free_.end(), i) != free_.end();
        if (!isFree || (slots_[i] && slots_[i]->isOk())) {
            ++n;
        }
    }
    return n;
}

std::size_t Pool::acquire() {
    std::unique_lock lock(mutex_);
    // Waiting longer than a connect would take only piles up sessions during an outage.
    if (!available_.wait_for(lock, settings_.connectTimeout, [this] { return !free_.empty(); })) {
        return slots_.size();
    }
    // LIFO: the most recently used connection is the most likely to be alive and warm.
    std::size_t slot = free_.back();
    free_.pop_back();
    return slot;
}

void Pool::release(std::size_t slot) {
    {
        std::lock_guard lock(mutex_);
        free_.push_back(slot);
    }
    available_.notify_one();
}

void Pool::noteDown(const std::string& why) {
    {
        std::lock_guard lock(mutex_);
        retryAt_ = Clock::now() + settings_.connectTimeout;
    }
    if (!down_.exchange(true)) {
        logger().error(core::EventLine("pg.down").text("error", why).str());
    }
}

bool Pool::admit(bool& probe) {
    probe = false;
    if (!down_) {
        return true;
    }
    std::lock_guard lock(mutex_);
    if (!down_) {
        return true;
    }
    if (probing_ || Clock::now() < retryAt_) {
        return false;
    }
    probing_ = true;
    probe = true;
    return true;
}

void Pool::endProbe(bool probe) {
    if (probe) {
        std::lock_guard lock(mutex_);
        probing_ = false;
    }
}

namespace {

QueryResult unavailable() {
    return QueryResult::failure("database unavailable (the last attempt failed; retried at most once per connect_timeout)",
                                "08006");
}

}  // namespace

void Pool::noteUp(const Connection& c) {
    if (down_.exchange(false)) {
        logger().notice(core::EventLine("pg.up").add("server", c.peer()).str());
        std::function<void()> listener;
        {
            std::lock_guard lock(listenerMutex_);
            listener = upListener_;
        }
        if (listener) listener();
    }
}

void Pool::setUpListener(std::function<void()> listener) {
    std::lock_guard lock(listenerMutex_);
    upListener_ = std::move(listener);
}

bool Pool::ensureConnected(std::size_t slot, std::string& error) {
    ConnectionPtr& c = slots_[slot];
    if (c && c->isOk()) {
        return true;
    }
    c.reset();
    c = Connection::open(settings_, error);
    if (!c) {
        noteDown(error);
        return false;
    }
    noteUp(*c);
    return true;
}

QueryResult Pool::execute(const Statement& statement, const Params& params) {
    bool probe = false;
    if (!admit(probe)) {
        return unavailable();
    }
    const std::size_t slot = acquire();
    if (slot == slots_.size()) {
        endProbe(probe);
        return QueryResult::failure("no free database connection within connect_timeout", "08000");
    }
    QueryResult r;
    bool lost = false;  // an attempt was sent and its connection went away unanswered
    try {
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (attempt > 0 && r.mayHaveCommitted()) lost = true;  // the first attempt's outcome
            std::string error;
            if (!ensureConnected(slot, error)) {
                r = QueryResult::failure("cannot connect: " + error, "08001");
                break;
            }
            r = slots_[slot]->execPrepared(statement, params);
            if (r.timedOut) {
                // The server did not answer within the deadline: the connection is closed and
                // the statement is not retried (a second try would double the caller's wait).
                noteDown(r.error);
                slots_[slot].reset();
                break;
            }
            if (!slots_[slot]->isBroken(r)) {
                if (!r.failed()) {
                    noteUp(*slots_[slot]);
                }
                break;
            }
            // The server went away under us (restart, failover, idle cut): a fresh connection
            // gets one more try, so a blip costs the caller nothing. Only a fresh connection that
            // breaks too marks the pool down (one that cannot even connect does so in
            // ensureConnected): a stale connection after a restart must not turn the callers
            // that race this retry into "database unavailable" while the server is up.
            if (attempt == 1) noteDown(r.error);
            slots_[slot].reset();
        }
    } catch (...) {
        // bad_alloc building a large result, say: the slot must not stay taken (after
        // pool_size of these every statement would fail "no free database connection").
        slots_[slot].reset();
        release(slot);
        endProbe(probe);
        throw;
    }
    if (r.failed() && lost) r.earlierAttemptLost = true;
    release(slot);
    endProbe(probe);
    return r;
}

QueryResult Pool::withConnection(const std::function<QueryResult(Connection&)>& fn) {
    bool probe = false;
    if (!admit(probe)) {
        return unavailable();
    }
    const std::size_t slot = acquire();
    if (slot == slots_.size()) {
        endProbe(probe);
        return QueryResult::failure("no free database connection within connect_timeout", "08000");
    }
    QueryResult r;
    std::string error;
    if (!ensureConnected(slot, error)) {
        r = QueryResult::failure("cannot connect: " + error, "08001");
    } else {
        try {
            r = fn(*slots_[slot]);
        } catch (...) {
            slots_[slot].reset();  // unknown state (maybe inside a transaction): do not reuse
            release(slot);
            endProbe(probe);
            throw;
        }
        if (slots_[slot]->timedOut()) {
            noteDown("no answer from the server within the client deadline");
        } else if (slots_[slot]->isOk()) {
            noteUp(*slots_[slot]);  // the server answered
        }
        // Broken, timed out, or left inside a transaction: the next caller must get a clean
        // session.
        if (!slots_[slot]->isOk() || !slots_[slot]->isIdle()) {
            slots_[slot].reset();
        }
    }
    release(slot);
    endProbe(probe);
    return r;
}

}  // namespace postern::pg
