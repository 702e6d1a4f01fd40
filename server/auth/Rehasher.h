// Rehash on login, the work: after a successful login whose stored hash is in an old scheme
// (RehashPolicy.h), one background thread hashes the password with the target scheme and
// stores it through the backend's setPassword (the plugin ABI's set_password). Off the
// session's path: a login never waits for it, and a failed write never fails a login.
#pragma once

#include "api/PluginApi.h"
#include "auth/PasswordScheme.h"
#include "core/EventCounters.h"

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace postern::auth {

struct RehashSettings {
    HashScheme target = DefaultHashScheme;  // auth.default_scheme
    std::size_t queueLimit = 0;             // auth.rehash_queue: waiting jobs; more are dropped
    bool operator==(const RehashSettings&) const = default;
};

// Thread-safe. One worker thread (started by the constructor, joined by the destructor).
//
// For each job, in order: (1) ask the backend again (authenticate) and go on only if it still
// holds the very hash the login was checked against (a backend that verifies itself: still
// accepts the password and reports the same old scheme): a password changed meanwhile
// (posternctl user passwd) is never overwritten with the old one, and a second login that
// queued the same rehash finds the new hash and stops there; (2) make the new hash and check that it verifies;
// (3) the write: replacePassword, a compare-and-set against the hash the login was checked
// against (Changed = a password changed meanwhile: skipped); a backend without it (or one
// that verified the password itself) is asked again as in (1), then setPassword. One log
// line per rehash on "postern.auth": event=auth.rehash user=... backend=... from=MD5-CRYPT
// to=ARGON2ID; a failed write logs event=auth.rehash_failed at
// warning level once per backend and kind of failure (until a rehash there succeeds again),
// later ones at debug level; the old hash stays, the login succeeded anyway. Counters:
// count("auth_rehash", "ok" | "failed" | "skipped" | "dropped").
//
// The password is held in memory only while its job waits (at most queueLimit jobs) and is
// wiped when the job is done or dropped.
class Rehasher {
public:
    explicit Rehasher(RehashSettings settings, core::EventCounters& counters = core::NullEventCounters::instance());
    ~Rehasher();  // drops waiting jobs (the next login queues them again), finishes the current one
    Rehasher(const Rehasher&) = delete;
    Rehasher& operator=(const Rehasher&) = delete;

    struct Job {
        std::string backendName;                    // instance, for the log
        plugins::api::Backend* backend = nullptr;   // not owned; must outlive the Rehasher
        std::string user;                           // as the backend spells it (record.user)
        std::string password;
        std::string oldHash;                        // what the login was checked against ("" if the
                                                    // backend verified the password itself)
        std::string fromScheme;                     // canonical name of its scheme
        bool verifiedByBackend = false;             // the backend checked the password (reported the scheme)
    };

    // Queues the job; false (and the password wiped) if the queue is full or the same user of
    // the same backend is waiting already. Never blocks on the work.
    bool submit(Job job);

    HashScheme target() const { return settings_.target; }

    // Tests: waits until no job is waiting or running (true), or the timeout passes (false).
    bool waitIdle(std::chrono::milliseconds timeout);

private:
    void run();
    void process(Job& job);
    // Asks the backend again: true if it still holds the hash the login was checked against;
    // otherwise counts and logs the job as skipped.
    // beforeWrite: the last check before a plain write (no compare-and-set), asked as service
    // "rehash" so that a backend with read replicas answers it from its primary; the first
    // check ("rehash_check") may be answered by a replica (a write still follows a CAS or
    // that last check).
    bool stillTheSameHash(const Job& job, bool beforeWrite);
    void skipped(const Job& job, std::string_view reason);
    void failed(const Job& job, const std::string& status, const std::string& detail);

    const RehashSettings settings_;
    core::EventCounters& counters_;
    std::mutex mutex_;
    std::condition_variable wake_;
    std::condition_variable idle_;
    std::deque<Job> queue_;
    std::set<std::pair<std::string, std::string>> pending_;  // (backend, user) queued or running
    bool busy_ = false;
    bool stopping_ = false;
    std::set<std::pair<std::string, std::string>> warned_;  // (backend, failure kind): worker thread only
    std::thread worker_;  // last: starts after everything above exists
};

}  // namespace postern::auth
