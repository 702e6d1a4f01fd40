// Rehash on login, the work (see Rehasher.h).
#include "auth/Rehasher.h"

#include "auth/RehashPolicy.h"
#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <exception>

namespace postern::auth {

namespace api = plugins::api;

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.auth");
    return l;
}

void wipe(std::string& s) {
    if (!s.empty()) {
        OPENSSL_cleanse(s.data(), s.size());
    }
    s.clear();
}

const char* writeStatusName(api::WriteStatus s) {
    switch (s) {
    case api::WriteStatus::Ok: return "ok";
    case api::WriteStatus::UnknownUser: return "unknown_user";
    case api::WriteStatus::UnknownDomain: return "unknown_domain";
    case api::WriteStatus::Exists: return "exists";
    case api::WriteStatus::Invalid: return "invalid";
    case api::WriteStatus::Unsupported: return "unsupported";
    case api::WriteStatus::TempFail: return "tempfail";
    case api::WriteStatus::IoError: return "io_error";
    case api::WriteStatus::ConfigError: return "config_error";
    case api::WriteStatus::Failed: return "failed";
    case api::WriteStatus::Changed: return "changed";
    }
    return "failed";
}

}  // namespace

Rehasher::Rehasher(RehashSettings settings, core::EventCounters& counters)
    : settings_(settings), counters_(counters), worker_([this] { run(); }) {}

Rehasher::~Rehasher() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        for (auto& job : queue_) {
            wipe(job.password);
        }
        queue_.clear();
    }
    wake_.notify_all();
    if (worker_.joinable()) {
        worker_.join();
    }
}

bool Rehasher::submit(Job job) {
    {
        std::lock_guard lock(mutex_);
        const auto key = std::make_pair(job.backendName, job.user);
        if (!stopping_ && queue_.size() < settings_.queueLimit && pending_.count(key) == 0) {
            queue_.push_back(std::move(job));
            try {
                pending_.insert(key);
            } catch (...) {
                wipe(queue_.back().password);
                queue_.pop_back();
                throw;
            }
            wake_.notify_one();
            return true;
        }
        if (pending_.count(key) != 0) {
            wipe(job.password);
            return false;  // queued already: nothing lost
        }
    }
    wipe(job.password);
    counters_.count("auth_rehash", "dropped");
    logger().debug(core::EventLine("auth.rehash_dropped")
                       .add("user", job.user)
                       .add("backend", job.backendName)
                       .add("reason", "queue full")
                       .str());
    return false;
}

bool Rehasher::waitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return idle_.wait_for(lock, timeout, [this] { return queue_.empty() && !busy_; });
}

void Rehasher::run() {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) {
                break;
            }
            job = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
        }
        try {
            process(job);
        } catch (const std::exception& e) {
            failed(job, "failed", e.what());
        } catch (...) {
            failed(job, "failed", "unexpected error");
        }
        wipe(job.password);
        {
            std::lock_guard lock(mutex_);
            pending_.erase({job.backendName, job.user});
            busy_ = false;
        }
        idle_.notify_all();
    }
    std::lock_guard lock(mutex_);
    busy_ = false;
    idle_.notify_all();
}

bool Rehasher::stillTheSameHash(const Job& job, bool beforeWrite) {
    const api::AuthAnswer now =
        job.backend->authenticate(job.user, job.password, beforeWrite ? "rehash" : "rehash_check", "");
    const bool same = now.status == api::Status::Ok && now.appPasswordId.empty() && now.verified == job.verifiedByBackend &&
                      (job.verifiedByBackend ? canonicalSchemeName(now.storedScheme) == job.fromScheme
                                             : now.record.passwordHash == job.oldHash);
    if (!same) skipped(job, now.status == api::Status::TempFail ? "backend_tempfail" : "hash_changed");
    return same;
}

void Rehasher::skipped(const Job& job, std::string_view reason) {
    counters_.count("auth_rehash", "skipped");
    logger().debug(core::EventLine("auth.rehash_skipped")
                       .add("user", job.user)
                       .add("backend", job.backendName)
                       .add("reason", reason)
                       .str());
}

void Rehasher::process(Job& job) {
    const std::string to(schemeName(settings_.target));
    // (1) Still the hash the login was checked against? A changed password is not ours to
    // touch, and a rehash done meanwhile needs no second write (nor the cost of a new hash).
    if (!stillTheSameHash(job, false)) return;
    // (2) The new hash, checked before it replaces a working one.
    std::string hash = makePasswordHash(settings_.target, job.password);
    if (verifyPassword(job.password, hash) != VerifyResult::Match) {
        wipe(hash);
        failed(job, "failed", "the new " + to + " hash does not verify");
        return;
    }
    // (3) One write through the plugin: a compare-and-set against the hash the login was
    // checked against, so a password changed while (2) ran (an Argon2id hash takes tens of
    // milliseconds) is not overwritten. A backend that cannot compare (a plugin without
    // replace_password, a backend that verified the password itself) is asked once more,
    // right before its plain write.
    api::WriteAnswer w{api::WriteStatus::Unsupported, ""};
    if (!job.verifiedByBackend) w = job.backend->replacePassword(job.user, job.oldHash, hash);
    if (w.status == api::WriteStatus::Unsupported) {
        if (!stillTheSameHash(job, true)) {
            wipe(hash);
            return;
        }
        w = job.backend->setPassword(job.user, hash);
    }
    wipe(hash);
    if (w.status == api::WriteStatus::Changed) {
        skipped(job, "hash_changed");
        return;
    }
    if (w.status != api::WriteStatus::Ok) {
        failed(job, writeStatusName(w.status), w.detail);
        return;
    }
    std::erase_if(warned_, [&](const auto& k) { return k.first == job.backendName; });
    counters_.count("auth_rehash", "ok");
    logger().information(core::EventLine("auth.rehash")
                             .add("user", job.user)
                             .add("backend", job.backendName)
                             .add("from", job.fromScheme)
                             .add("to", to)
                             .str());
}

void Rehasher::failed(const Job& job, const std::string& status, const std::string& detail) {
    counters_.count("auth_rehash", "failed");
    core::EventLine line("auth.rehash_failed");
    line.add("user", job.user)
        .add("backend", job.backendName)
        .add("from", job.fromScheme)
        .add("to", std::string(schemeName(settings_.target)))
        .add("status", status)
        .text("detail", detail + "; the old hash stays (the login succeeded)");
    // A file the daemon may not write, a read-only store: say it once per backend and kind,
    // not at every login of every user with an old hash.
    if (warned_.insert({job.backendName, status}).second) {
        logger().warning(line.str());
    } else {
        logger().debug(line.str());
    }
}

}  // namespace postern::auth
