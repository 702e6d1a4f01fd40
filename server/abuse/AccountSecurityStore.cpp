#include "abuse/AccountSecurityStore.h"

#include "abuse/AccountSecurityStateFile.h"
#include "abuse/NameFold.h"
#include "core/EventLine.h"
#include "core/Network.h"

#include <Poco/File.h>
#include <Poco/Logger.h>

#include <algorithm>
#include <sys/stat.h>
#include <cstdio>

namespace postern::abuse {

std::vector<std::string> ActivityBatch::accounts() const {
    std::set<std::string> all;
    for (const auto& [user, ips] : loginIps) all.insert(user);
    for (const auto& [user, c] : counts) all.insert(user);
    return {all.begin(), all.end()};
}

std::size_t ActivityBatch::absorb(ActivityBatch&& older, std::size_t maxLogins) {
    for (auto& [user, ips] : older.loginIps) loginIps[user].insert(ips.begin(), ips.end());
    for (auto& [name, ips] : older.loginNameIps) loginNameIps[name].insert(ips.begin(), ips.end());
    for (const auto& [user, c] : older.counts) {
        auto& mine = counts[user];
        mine.remoteRejected += c.remoteRejected;
        mine.bounces += c.bounces;
    }
    older.logins.insert(older.logins.end(), std::make_move_iterator(logins.begin()),
                        std::make_move_iterator(logins.end()));
    logins = std::move(older.logins);
    std::size_t dropped = 0;
    if (logins.size() > maxLogins) {
        dropped = logins.size() - maxLogins;
        logins.erase(logins.begin(), logins.begin() + static_cast<std::ptrdiff_t>(dropped));
    }
    return dropped;
}

namespace {
// Keeps the newest `max` successful logins and the newest `max` other attempts of one
// account's log (oldest first; order kept): failures, however many, never push its
// successes (the addresses it is known from) out. Returns how many entries went.
std::size_t trimLoginLog(std::vector<LoginRecord>& log, std::size_t max) {
    std::size_t ok = 0, other = 0;
    for (const LoginRecord& r : log) (r.result == "ok" ? ok : other) += 1;
    if (ok <= max && other <= max) return 0;
    std::size_t dropOk = ok > max ? ok - max : 0, dropOther = other > max ? other - max : 0;
    const std::size_t before = log.size();
    std::erase_if(log, [&](const LoginRecord& r) {
        std::size_t& drop = r.result == "ok" ? dropOk : dropOther;
        if (drop == 0) return false;
        --drop;
        return true;
    });
    return before - log.size();
}
}  // namespace

std::optional<std::string> knownAddressKey(const std::string& ip, unsigned ipv6Prefix) {
    auto parsed = core::parseAddress(ip);
    if (!parsed) return std::nullopt;
    return core::addressKey(*parsed, ipv6Prefix);
}

std::optional<std::string> networkOf(const std::string& ip) {
    auto parsed = core::parseAddress(ip);
    if (!parsed) return std::nullopt;
    Poco::Net::IPAddress a = core::unmapped(*parsed);
    if (a.family() == Poco::Net::IPAddress::IPv4) {
        Poco::Net::IPAddress net = a & Poco::Net::IPAddress(24, Poco::Net::IPAddress::IPv4);
        return net.toString() + "/24";
    }
    Poco::Net::IPAddress net = a & Poco::Net::IPAddress(48, Poco::Net::IPAddress::IPv6);
    return net.toString() + "/48";
}

std::vector<AccountFlag> exceeded(const std::string& user, const AccountTotals& t, const AccountSecuritySettings& s) {
    std::vector<AccountFlag> out;
    auto check = [&](const char* reason, std::uint64_t value, std::uint32_t max) {
        if (max > 0 && value > max) out.push_back({user, reason, value, max});
    };
    check("ips", t.ips, s.maxIps);
    check("networks", t.networks, s.maxNetworks);
    check("remote_rejected", t.remoteRejected, s.maxRemoteRejected);
    check("bounces", t.bounces, s.maxBounces);
    // Worst first: the largest multiple of its threshold (ties keep the order above).
    std::stable_sort(out.begin(), out.end(), [](const AccountFlag& a, const AccountFlag& b) {
        return a.value * b.threshold > b.value * a.threshold;
    });
    return out;
}

namespace {

// A damaged file renamed to <path>.corrupt for the operator; what the log line says of it.
std::string setAside(const std::string& path) {
    const std::string aside = path + ".corrupt";
    try {
        Poco::File(path).renameTo(aside);
        return aside;
    } catch (const std::exception& e) {
        return std::string("failed: ") + e.what();
    }
}

}  // namespace

MemoryAccountSecurityStore::MemoryAccountSecurityStore(std::string statePath)
    : statePath_(std::move(statePath)), flagsPath_(statePath_.empty() ? std::string() : statePath_ + ".flags") {
    if (statePath_.empty()) return;
    Poco::Logger& log = Poco::Logger::get("postern.abuse");
    StateFileLoad loaded = loadAccountSecurityState(statePath_);  // throws when unreadable
    switch (loaded.status) {
    case StateFileLoad::Status::Missing:
        break;
    case StateFileLoad::Status::Loaded:
        state_ = std::move(loaded.state);
        log.information(core::EventLine("account_security.state_loaded")
                            .add("path", statePath_)
                            .add("accounts", static_cast<Poco::UInt64>(state_.accounts.size()))
                            .add("held", static_cast<Poco::UInt64>(state_.flags.size()))
                            .str());
        break;
    case StateFileLoad::Status::Corrupt: {
        // Kept aside for the operator; starting empty means the accounts it held are no
        // longer held, which the error line says in so many words.
        const std::string moved = setAside(statePath_);
        log.error(core::EventLine("account_security.state_corrupt")
                      .add("path", statePath_)
                      .text("error", loaded.error)
                      .text("moved_to", moved)
                      .text("detail", "its counters and login log are lost; the held accounts come from the "
                                      "flags file if there is one, else none is held: check posternctl queue "
                                      "list and the account.flagged lines of the log")
                      .str());
        dirty_ = true;  // write a valid file at the first flush
        break;
    }
    }
    // The flags file is written at every change of the flags (before the state file, when
    // both are), the state file at most every write interval: the newer of the two has the
    // current flags (a flag or release the state file does not know yet; a state file written
    // by an older release, which writes no flags file, after this one's).
    StateFileLoad flags = loadAccountSecurityState(flagsPath_);
    if (flags.status == StateFileLoad::Status::Loaded) {
        struct stat fs {}, ss {};
        const bool stateNewer = loaded.status == StateFileLoad::Status::Loaded && ::stat(flagsPath_.c_str(), &fs) == 0 &&
                                ::stat(statePath_.c_str(), &ss) == 0 &&
                                (ss.st_mtim.tv_sec > fs.st_mtim.tv_sec ||
                                 (ss.st_mtim.tv_sec == fs.st_mtim.tv_sec && ss.st_mtim.tv_nsec > fs.st_mtim.tv_nsec));
        if (!stateNewer) {
            if (flags_ != flags.state.flags || loaded.status == StateFileLoad::Status::Corrupt)
                log.notice(core::EventLine("account_security.flags_loaded")
                               .add("path", flagsPath_)
                               .add("held", static_cast<Poco::UInt64>(flags.state.flags.size()))
                               .str());
            flags_ = std::move(flags.state.flags);
        }
    } else if (flags.status == StateFileLoad::Status::Corrupt) {
        const std::string moved = setAside(flagsPath_);
        log.error(core::EventLine("account_security.flags_corrupt")
                      .add("path", flagsPath_)
                      .text("error", flags.error)
                      .text("moved_to", moved)
                      .text("detail", "using the flags of the state file (up to state_write_interval old)")
                      .str());
    }
    // (Re)written at the first flush when there is something to say: no file appears in the
    // queue directory of a node that never flagged anyone.
    flagsDirty_ = !flags_.empty() || flags.status != StateFileLoad::Status::Missing;
}

bool MemoryAccountSecurityStore::persist() { return persistNow(false); }

bool MemoryAccountSecurityStore::persistFinal() { return persistNow(true); }

bool MemoryAccountSecurityStore::persistNow(bool all) {
    if (statePath_.empty()) return true;
    std::string flagsText;
    std::string text;
    bool wroteFlags = false;
    {
        std::lock_guard lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (flagsDirty_) {
            AccountSecurityState flagsOnly;
            flagsOnly.flags = flags_;
            flagsText = formatAccountSecurityState(flagsOnly);
            flagsDirty_ = false;
            wroteFlags = true;
        }
        // A failed write is retried at the next cycle (lastWrite_ moves only on success); a
        // release is written at once: the state file's old IPs and counters would flag the
        // account again at its next login after a crash.
        if (dirty_ && (all || forceState_ || retryState_ || writeInterval_.count() == 0 ||
                       lastWrite_ == std::chrono::steady_clock::time_point{} || now - lastWrite_ >= writeInterval_)) {
            text = formatAccountSecurityState(state_);
            dirty_ = false;
            forceState_ = false;
        }
    }
    if (!wroteFlags && text.empty()) return true;
    try {
        // The flags first: they decide what stays held; the state file after them.
        if (wroteFlags) writeFileAtomically(flagsPath_, flagsText);
        if (!text.empty()) writeFileAtomically(statePath_, text);
    } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        if (wroteFlags) flagsDirty_ = true;
        if (!text.empty()) dirty_ = retryState_ = true;
        if (!writeFailing_)
            Poco::Logger::get("postern.abuse")
                .error(core::EventLine("account_security.state_write_fail")
                           .add("path", statePath_)
                           .text("error", e.what())
                           .str());
        writeFailing_ = true;
        return false;
    }
    std::lock_guard lock(mutex_);
    if (!text.empty()) {
        lastWrite_ = std::chrono::steady_clock::now();
        retryState_ = false;
    }
    // Recovered once nothing is left unwritten (a flags file alone says nothing of the state).
    if (writeFailing_ && !retryState_ && !flagsDirty_)
        Poco::Logger::get("postern.abuse")
            .notice(core::EventLine("account_security.state_write_ok").add("path", statePath_).str());
    if (!retryState_) writeFailing_ = false;
    return true;
}

AccountSecurityState MemoryAccountSecurityStore::snapshot() const {
    std::lock_guard lock(mutex_);
    return state_;
}

AccountTotals MemoryAccountSecurityStore::totalsLocked(const Account& a, core::TimePoint now,
                                                       std::chrono::milliseconds window) const {
    AccountTotals t;
    const core::TimePoint since = now - window;
    std::set<std::string> nets;
    for (const auto& [ip, last] : a.ips) {
        if (last <= since) continue;
        ++t.ips;
        if (auto n = networkOf(ip)) nets.insert(*n);
    }
    t.networks = nets.size();
    for (const auto& [at, c] : a.counts) {
        if (at <= since) continue;
        t.remoteRejected += c.remoteRejected;
        t.bounces += c.bounces;
    }
    return t;
}

bool MemoryAccountSecurityStore::flush(const ActivityBatch& batch, core::TimePoint now,
                                       const AccountSecuritySettings& settings,
                                       std::vector<AccountFlag>& newlyFlagged) {
    std::lock_guard lock(mutex_);
    if (!batch.empty()) dirty_ = true;
    if (settings.loginLogMaxEntries > 0) {
        // Names with a successful login in this batch: their earlier failures in it count.
        std::set<std::string_view> okNow;
        for (const auto& e : batch.logins)
            if (e.result == "ok" || e.verified) okNow.insert(e.user);
        for (const auto& e : batch.logins) {
            if (!okNow.count(e.user) && !accounts_.count(e.user) && !flags_.count(e.user)) {
                ++counters_.untrackedLogins;  // not an account we know: no per-name state
                continue;
            }
            auto& log = accounts_[e.user].logins;
            log.push_back({e.at, e.ip, e.protocol, e.mechanism, e.tls, e.result});
            trimLoginLog(log, settings.loginLogMaxEntries);
        }
    }
    for (const auto& [user, ips] : batch.loginIps) {
        auto& a = accounts_[user];
        for (const auto& ip : ips) {
            auto& last = a.ips[ip];
            last = std::max(last, now);
        }
    }
    for (const auto& [user, c] : batch.counts) accounts_[user].counts.push_back({now, c});
    for (const auto& [name, ips] : batch.loginNameIps) {
        auto& known = loginNames_[name];
        for (const auto& ip : ips) {
            auto& last = known[ip];
            last = std::max(last, now);
        }
        while (known.size() > MaxLoginNameIps)  // the least recent go
            known.erase(std::min_element(known.begin(), known.end(),
                                         [](const auto& a, const auto& b) { return a.second < b.second; }));
    }
    evictLocked(settings);
    if (!settings.enabled) return true;
    for (const auto& user : batch.accounts()) {
        if (flags_.count(user)) continue;
        auto over = exceeded(user, totalsLocked(accounts_[user], now, settings.window), settings);
        if (over.empty()) continue;
        flags_.emplace(user, over.front());
        flagsDirty_ = true;
        newlyFlagged.push_back(over.front());
    }
    return true;
}

std::optional<std::vector<std::string>> MemoryAccountSecurityStore::flagged() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [user, f] : flags_) out.push_back(user);
    return out;
}

bool MemoryAccountSecurityStore::release(const std::string& user) {
    std::lock_guard lock(mutex_);
    if (flags_.erase(user)) dirty_ = flagsDirty_ = forceState_ = true;
    auto it = accounts_.find(user);
    if (it != accounts_.end()) {
        if (!it->second.ips.empty() || !it->second.counts.empty()) dirty_ = true;
        it->second.ips.clear();
        it->second.counts.clear();
    }
    return true;
}

bool MemoryAccountSecurityStore::prune(core::TimePoint now, const AccountSecuritySettings& settings) {
    std::lock_guard lock(mutex_);
    const core::TimePoint since = now - settings.window;
    const core::TimePoint logSince = now - settings.loginLogMaxAge;
    for (auto it = accounts_.begin(); it != accounts_.end();) {
        Account& a = it->second;
        std::size_t erased = std::erase_if(a.ips, [&](const auto& kv) { return kv.second <= since; });
        erased += std::erase_if(a.counts, [&](const auto& c) { return c.first <= since; });
        erased += std::erase_if(a.logins, [&](const LoginRecord& r) { return r.at <= logSince; });
        // A log loaded from a file written under a larger login_log_max_entries.
        erased += trimLoginLog(a.logins, settings.loginLogMaxEntries);
        if (erased) dirty_ = true;
        if (a.ips.empty() && a.counts.empty() && a.logins.empty())
            it = accounts_.erase(it);
        else
            ++it;
    }
    evictLocked(settings);  // a state file written under a larger max_tracked_accounts
    for (auto it = loginNames_.begin(); it != loginNames_.end();) {
        std::erase_if(it->second, [&](const auto& kv) { return kv.second <= logSince; });
        it = it->second.empty() ? loginNames_.erase(it) : std::next(it);
    }
    return true;
}

void MemoryAccountSecurityStore::evictLocked(const AccountSecuritySettings& settings) {
    const std::size_t cap = std::max<std::size_t>(settings.maxTrackedAccounts, 1);
    std::size_t withLog = 0;
    for (const auto& [user, a] : accounts_)
        if (!a.logins.empty()) ++withLog;
    if (withLog <= cap) return;
    // The last activity of each account with a log: its newest login entry, IP or counter.
    using Entry = std::pair<core::TimePoint, std::map<std::string, Account>::iterator>;
    std::vector<Entry> byActivity;
    byActivity.reserve(withLog);
    for (auto it = accounts_.begin(); it != accounts_.end(); ++it) {
        const Account& a = it->second;
        if (a.logins.empty()) continue;
        core::TimePoint last{};
        for (const auto& r : a.logins) last = std::max(last, r.at);
        for (const auto& [ip, at] : a.ips) last = std::max(last, at);
        for (const auto& [at, c] : a.counts) last = std::max(last, at);
        byActivity.emplace_back(last, it);
    }
    const std::size_t drop = withLog - cap;
    // Oldest first; ties by name (map order) so the choice is deterministic.
    std::nth_element(byActivity.begin(), byActivity.begin() + static_cast<std::ptrdiff_t>(drop - 1), byActivity.end(),
                     [](const Entry& x, const Entry& y) {
                         return x.first != y.first ? x.first < y.first : x.second->first < y.second->first;
                     });
    for (std::size_t i = 0; i < drop; ++i) {
        auto it = byActivity[i].second;
        it->second.logins.clear();
        if (it->second.ips.empty() && it->second.counts.empty()) accounts_.erase(it);
    }
    counters_.evictedLogs += drop;
    dirty_ = true;
}

AccountStoreCounters MemoryAccountSecurityStore::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

std::vector<LoginRecord> MemoryAccountSecurityStore::logins(const std::string& user, std::size_t limit) const {
    std::lock_guard lock(mutex_);
    std::vector<LoginRecord> out;
    auto it = accounts_.find(user);
    if (it == accounts_.end()) return out;
    for (auto r = it->second.logins.rbegin(); r != it->second.logins.rend(); ++r) {
        if (limit && out.size() >= limit) break;
        out.push_back(*r);
    }
    return out;
}

std::optional<bool> MemoryAccountSecurityStore::knownAddress(const std::string& user, const std::string& ip,
                                                             unsigned ipv6Prefix, core::TimePoint ipsSince,
                                                             core::TimePoint logSince) {
    const auto key = knownAddressKey(ip, ipv6Prefix);
    if (!key) return false;
    auto same = [&](const std::string& other) { return knownAddressKey(other, ipv6Prefix) == key; };
    const std::string folded = foldName(user);
    std::lock_guard lock(mutex_);
    if (auto n = loginNames_.find(folded); n != loginNames_.end())
        for (const auto& [seen, at] : n->second)
            if (at > logSince && same(seen)) return true;
    auto it = accounts_.find(user);
    if (it == accounts_.end()) return false;
    for (const auto& [seen, at] : it->second.ips)
        if (at > ipsSince && same(seen)) return true;
    for (const LoginRecord& r : it->second.logins)
        if (r.result == "ok" && r.at > logSince && same(r.ip)) return true;
    return false;
}

AccountTotals MemoryAccountSecurityStore::totals(const std::string& user, core::TimePoint now,
                                                 std::chrono::milliseconds window) const {
    std::lock_guard lock(mutex_);
    auto it = accounts_.find(user);
    return it == accounts_.end() ? AccountTotals{} : totalsLocked(it->second, now, window);
}

}  // namespace postern::abuse
