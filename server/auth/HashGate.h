// A bound on password hash verifications running at once (auth.max_parallel_hashes), like
// Dovecot's auth_worker_max_count: each Argon2id check allocates its m= (19 MiB for Postern's
// hashes, 64 MiB for Dovecot's), and without a bound a flood of logins for made-up users (each
// checked against the dummy hash) could allocate gigabytes on the session threads at once.
// A login that waits longer than auth.hash_wait_timeout for a slot is a temporary failure
// (not a failed login: the penalty does not count it).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <stdexcept>

namespace postern::auth {

// Thrown by AuthFacade's verification when no slot came in time: a temporary failure.
struct HashesBusy : std::runtime_error {
    HashesBusy() : std::runtime_error("too many password checks at once (auth.max_parallel_hashes)") {}
};

class HashGate {
public:
    // limit 0: no bound (every acquire succeeds at once).
    HashGate(std::size_t limit, std::chrono::milliseconds wait) : limit_(limit), wait_(wait) {}

    // Holds one slot for its lifetime; throws HashesBusy after the wait.
    class Slot {
    public:
        explicit Slot(HashGate* gate) : gate_(gate) {
            if (gate_ != nullptr && !gate_->acquire()) throw HashesBusy();
        }
        ~Slot() {
            if (gate_ != nullptr) gate_->release();
        }
        Slot(const Slot&) = delete;
        Slot& operator=(const Slot&) = delete;

    private:
        HashGate* gate_;
    };

    std::size_t inUse() const {
        std::lock_guard lock(mutex_);
        return inUse_;
    }

private:
    bool acquire() {
        std::unique_lock lock(mutex_);
        if (limit_ == 0) {
            ++inUse_;
            return true;
        }
        if (!freed_.wait_for(lock, wait_, [this] { return inUse_ < limit_; })) return false;
        ++inUse_;
        return true;
    }
    void release() {
        {
            std::lock_guard lock(mutex_);
            --inUse_;
        }
        freed_.notify_one();
    }

    const std::size_t limit_;
    const std::chrono::milliseconds wait_;
    mutable std::mutex mutex_;
    std::condition_variable freed_;
    std::size_t inUse_ = 0;
};

}  // namespace postern::auth
