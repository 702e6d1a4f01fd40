#include "abuse/AccountSecurityStore.h"

#include "core/Network.h"

#include <algorithm>
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
    if (settings.loginLogMaxEntries > 0)
        for (const auto& e : batch.logins) {
            auto& log = accounts_[e.user].logins;
            log.push_back({e.at, e.ip, e.protocol, e.mechanism, e.tls, e.result});
            if (log.size() > settings.loginLogMaxEntries)
                log.erase(log.begin(), log.begin() + static_cast<std::ptrdiff_t>(log.size() - settings.loginLogMaxEntries));
        }
    for (const auto& [user, ips] : batch.loginIps) {
        auto& a = accounts_[user];
        for (const auto& ip : ips) {
            auto& last = a.ips[ip];
            last = std::max(last, now);
        }
    }
    for (const auto& [user, c] : batch.counts) accounts_[user].counts.push_back({now, c});
    if (!settings.enabled) return true;
    for (const auto& user : batch.accounts()) {
        if (flags_.count(user)) continue;
        auto over = exceeded(user, totalsLocked(accounts_[user], now, settings.window), settings);
        if (over.empty()) continue;
        flags_.emplace(user, over.front());
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
    flags_.erase(user);
    auto it = accounts_.find(user);
    if (it != accounts_.end()) {
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
        std::erase_if(a.ips, [&](const auto& kv) { return kv.second <= since; });
        std::erase_if(a.counts, [&](const auto& c) { return c.first <= since; });
        std::erase_if(a.logins, [&](const LoginRecord& r) { return r.at <= logSince; });
        if (a.ips.empty() && a.counts.empty() && a.logins.empty())
            it = accounts_.erase(it);
        else
            ++it;
    }
    return true;
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

AccountTotals MemoryAccountSecurityStore::totals(const std::string& user, core::TimePoint now,
                                                 std::chrono::milliseconds window) const {
    std::lock_guard lock(mutex_);
    auto it = accounts_.find(user);
    return it == accounts_.end() ? AccountTotals{} : totalsLocked(it->second, now, window);
}

}  // namespace postern::abuse
