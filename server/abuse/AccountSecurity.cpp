#include "abuse/AccountSecurity.h"

#include "abuse/NameFold.h"
#include "core/EventLine.h"

#include <Poco/DirectoryIterator.h>
#include <Poco/File.h>
#include <Poco/Logger.h>

#include <algorithm>

namespace postern::abuse {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.abuse"); }

// A release request file is named after the user; only names a login can have.
bool plausibleUser(const std::string& u) {
    return !u.empty() && u.size() <= 320 && u[0] != '.' &&
           std::none_of(u.begin(), u.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f || c == '/'; });
}

}  // namespace

AccountSecurity::AccountSecurity(AccountSecuritySettings settings, AccountSecurityStore& store, FlagHook onFlag,
                                 core::Clock clock)
    : settings_(std::move(settings)), store_(store), onFlag_(std::move(onFlag)),
      clock_(core::clockOrSystem(std::move(clock))) {}

AccountSecurity::~AccountSecurity() { stop(); }

void AccountSecurity::start() {
    {
        std::lock_guard lock(threadMutex_);
        if (started_) return;
        started_ = true;
    }
    thread_ = std::thread([this] { loop(); });
}

void AccountSecurity::stop() {
    {
        std::lock_guard lock(threadMutex_);
        if (!started_ || stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    finalFlush_ = true;  // the state file now, whatever its write interval says
    flushNow();          // what was recorded since the last cycle (best effort)
}

void AccountSecurity::loop() {
    flushNow();  // reads the flagged set at start: a restart keeps holding
    std::unique_lock lock(threadMutex_);
    while (!stopping_) {
        wake_.wait_for(lock, settings_.flushInterval, [this] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        try {
            flushNow();
        } catch (const std::exception& e) {
            logger().error(core::EventLine("account_security.flush_fail").text("error", e.what()).str());
        }
        lock.lock();
    }
}

void AccountSecurity::recordLogin(LoginEvent e) {
    const bool ok = e.result == "ok";
    if (!ok && settings_.loginLogMaxEntries == 0) return;
    std::lock_guard lock(pendingMutex_);
    if (ok && settings_.enabled) pending_.loginIps[e.user].insert(e.ip);
    if (settings_.loginLogMaxEntries == 0) return;
    // The name the client gave, when the account has another: the penalty asks under it.
    // Kept as long as the login log (whose successes are the other known addresses).
    if (ok && !e.login.empty() && e.login != e.user) pending_.loginNameIps[e.login].insert(e.ip);
    if (pending_.logins.size() >= settings_.maxPending) {
        dropped_.fetch_add(1);
        return;
    }
    pending_.logins.push_back(std::move(e));
}

void AccountSecurity::remoteRejected(const std::string& user, std::size_t recipients) {
    if (!settings_.enabled || user.empty() || recipients == 0) return;
    std::lock_guard lock(pendingMutex_);
    pending_.counts[user].remoteRejected += recipients;
}

void AccountSecurity::bounced(const std::string& user, std::size_t bounces) {
    if (!settings_.enabled || user.empty() || bounces == 0) return;
    std::lock_guard lock(pendingMutex_);
    pending_.counts[user].bounces += bounces;
}

std::optional<bool> AccountSecurity::knownAddress(const std::string& user, const std::string& ip,
                                                  unsigned ipv6Prefix) {
    const auto key = knownAddressKey(ip, ipv6Prefix);
    if (!key) return false;
    auto same = [&](const std::string& other) { return knownAddressKey(other, ipv6Prefix) == key; };
    const std::string folded = foldName(user);  // login names other than the account's are kept folded
    {
        std::lock_guard lock(pendingMutex_);
        for (const auto& [ips, name] : {std::pair{&pending_.loginIps, &user}, std::pair{&pending_.loginNameIps, &folded}})
            if (auto it = ips->find(*name); it != ips->end())
                for (const std::string& seen : it->second)
                    if (same(seen)) return true;
        for (const LoginEvent& e : pending_.logins)
            if (e.result == "ok" && e.user == user && same(e.ip)) return true;
        // The batch being written now is in neither place until its write ends.
        for (const std::string* name : {&user, &folded})
            if (auto it = flushingKnown_.find(*name); it != flushingKnown_.end())
                for (const std::string& seen : it->second)
                    if (same(seen)) return true;
    }
    const core::TimePoint now = clock_();
    return store_.knownAddress(user, ip, ipv6Prefix, now - settings_.window, now - settings_.loginLogMaxAge);
}

bool AccountSecurity::isHeld(std::string_view user) const {
    if (!settings_.enabled || user.empty()) return false;
    if (!heldKnown_.load()) return true;  // not read yet (the database was down at start)
    std::shared_lock lock(heldMutex_);
    return held_.find(user) != held_.end();
}

std::size_t AccountSecurity::heldCount() const {
    std::shared_lock lock(heldMutex_);
    return held_.size();
}

std::vector<std::string> AccountSecurity::applyReleaseRequests() {
    std::vector<std::string> done;
    if (settings_.releaseDir.empty()) return done;
    std::vector<std::string> names;
    try {
        Poco::File dir(settings_.releaseDir);
        if (!dir.exists()) return done;
        for (Poco::DirectoryIterator it(dir), end; it != end; ++it) names.push_back(it.name());
    } catch (const std::exception& e) {
        logger().warning(core::EventLine("account_security.release_dir_fail").text("error", e.what()).str());
        return done;
    }
    for (const auto& name : names) {
        const std::string path = settings_.releaseDir + "/" + name;
        if (!plausibleUser(name)) continue;
        if (store_.release(name)) {
            logger().notice(core::EventLine("account.released").add("user", name).add("by", "posternctl").str());
            done.push_back(path);
        }
    }
    return done;
}

bool AccountSecurity::flushNow() {
    std::lock_guard flushLock(flushMutex_);
    ActivityBatch batch;
    {
        std::lock_guard lock(pendingMutex_);
        std::swap(batch, pending_);
        // Its successful logins stay visible to knownAddress() while it is written.
        flushingKnown_.clear();
        for (const auto& [user, ips] : batch.loginIps)
            for (const std::string& ip : ips) flushingKnown_[user].push_back(ip);
        for (const auto& [name, ips] : batch.loginNameIps)
            for (const std::string& ip : ips) flushingKnown_[name].push_back(ip);
        for (const LoginEvent& e : batch.logins)
            if (e.result == "ok") flushingKnown_[e.user].push_back(e.ip);
    }
    const core::TimePoint now = clock_();
    bool ok = true;
    if (!batch.empty()) {
        std::vector<AccountFlag> flagged;
        if (store_.flush(batch, now, settings_, flagged)) {
            for (const auto& f : flagged) {
                logger().warning(core::EventLine("account.flagged")
                                     .add("user", f.user)
                                     .add("reason", f.reason)
                                     .add("value", static_cast<Poco::UInt64>(f.value))
                                     .add("threshold", static_cast<Poco::UInt64>(f.threshold))
                                     .add("window_s", static_cast<long>(settings_.window.count() / 1000))
                                     .str());
                if (onFlag_) onFlag_(f);
            }
            std::lock_guard lock(pendingMutex_);
            flushingKnown_.clear();  // in the store now
        } else {
            ok = false;
            std::lock_guard lock(pendingMutex_);
            std::size_t lost = pending_.absorb(std::move(batch), settings_.maxPending);
            if (lost) dropped_.fetch_add(lost);
            flushingKnown_.clear();  // back among the pending
        }
    } else {
        std::lock_guard lock(pendingMutex_);
        flushingKnown_.clear();
    }
    const std::vector<std::string> released = applyReleaseRequests();
    if (now - lastPrune_ >= std::chrono::minutes(1)) {
        // A failed prune is tried again a minute later, not at every flush (a slow one at
        // every flush of every node was a steady load on the primary; it logs its failure).
        store_.prune(now, settings_);
        lastPrune_ = now;
    }
    // A single node's state file: written before the release requests are deleted, so a
    // crash in between applies a request again rather than forgetting it.
    if (finalFlush_ ? store_.persistFinal() : store_.persist()) {
        for (const auto& path : released) {
            try {
                Poco::File(path).remove();
            } catch (const std::exception&) {
            }
        }
    } else {
        ok = false;
    }
    const AccountStoreCounters counted = store_.counters();
    if (counted.evictedLogs > reported_.evictedLogs)
        logger().notice(core::EventLine("account_security.login_logs_evicted")
                            .add("accounts", static_cast<Poco::UInt64>(counted.evictedLogs - reported_.evictedLogs))
                            .add("max_tracked_accounts", static_cast<Poco::UInt64>(settings_.maxTrackedAccounts))
                            .str());
    if (onCount_) {
        if (counted.untrackedLogins > reported_.untrackedLogins)
            onCount_("untracked_login", counted.untrackedLogins - reported_.untrackedLogins);
        if (counted.evictedLogs > reported_.evictedLogs)
            onCount_("login_log_evicted", counted.evictedLogs - reported_.evictedLogs);
    }
    reported_ = counted;
    if (settings_.enabled) {
        if (auto list = store_.flagged()) {
            StringSet fresh(list->begin(), list->end());
            std::unique_lock lock(heldMutex_);
            held_.swap(fresh);
            if (!heldKnown_.exchange(true))
                logger().information(core::EventLine("account_security.held_known").add("held", held_.size()).str());
        } else {
            if (!heldKnown_.load() && !unknownLogged_.exchange(true))
                logger().warning(core::EventLine("account_security.held_unknown")
                                     .text("detail", "flagged accounts cannot be read: authenticated submissions get "
                                                     "451 4.3.0 and their queued mail waits until they can")
                                     .str());
            ok = false;  // the last known set stays: a database outage does not release anyone
        }
    }
    return ok;
}

}  // namespace postern::abuse
