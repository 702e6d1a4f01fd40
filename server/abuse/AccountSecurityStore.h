// Where compromised-account counters, flags and the login log live: PostgreSQL in a
// cluster (PgAccountSecurityStore: every node's batches meet there, a flag set by one node
// holds the account on all), or memory on a standalone node (MemoryAccountSecurityStore,
// same rules). Both are written by AccountSecurity's flush thread only.
#pragma once

#include "core/Clock.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace postern::abuse {

struct AccountSecuritySettings {
    bool enabled = true;                                    // account_security.enabled
    std::chrono::milliseconds flushInterval{5000};          // account_security.flush_interval
    std::chrono::milliseconds window{std::chrono::hours(1)};  // account_security.window
    std::uint32_t maxIps = 20;             // account_security.max_ips (distinct IPs with a login; 0 = off)
    std::uint32_t maxNetworks = 10;        // account_security.max_networks (/24 and /48; 0 = off)
    std::uint32_t maxRemoteRejected = 50;  // account_security.max_remote_rejected (0 = off)
    std::uint32_t maxBounces = 30;         // account_security.max_bounces (0 = off)
    std::uint32_t loginLogMaxEntries = 100;                      // account_security.login_log_max_entries (0 = no log)
    std::chrono::milliseconds loginLogMaxAge{std::chrono::hours(24 * 30)};  // account_security.login_log_max_age
    std::size_t maxPending = 100000;       // login entries kept in memory while the store is down
    std::string releaseDir;                // standalone: posternctl user release drops a file here
    std::string nodeId;                    // written with a flag (which node flagged)
    bool operator==(const AccountSecuritySettings&) const = default;
};

// One login attempt for the login log.
struct LoginEvent {
    core::TimePoint at;
    std::string user;       // the canonical login on success, else the name the client gave
    std::string ip;         // ClientAddress::host()
    std::string protocol;   // "smtp" | "pop3"
    std::string mechanism;  // "PLAIN", "LOGIN", "USER", "APOP", ...
    std::string tls;        // "" = no TLS, else the version ("TLSv1.3") or "yes"
    std::string result;     // "ok" | "fail" | "blocked" | "tempfail"
};

struct LoginRecord {
    core::TimePoint at;
    std::string ip, protocol, mechanism, tls, result;
};

struct AccountCounts {
    std::uint64_t remoteRejected = 0;
    std::uint64_t bounces = 0;
};

// What one node recorded since its last flush.
struct ActivityBatch {
    std::vector<LoginEvent> logins;                             // the login log (all results)
    std::map<std::string, std::set<std::string>> loginIps;      // user -> IPs with a successful login
    std::map<std::string, AccountCounts> counts;                // user -> delivery outcomes
    bool empty() const { return logins.empty() && loginIps.empty() && counts.empty(); }
    // The accounts this batch touches for detection (loginIps and counts).
    std::vector<std::string> accounts() const;
    // Adds `older` (a batch that could not be written) in front of this one; keeps at most
    // maxLogins login entries (the newest); returns how many were dropped.
    std::size_t absorb(ActivityBatch&& older, std::size_t maxLogins);
};

struct AccountFlag {
    std::string user;
    std::string reason;  // "ips" | "networks" | "remote_rejected" | "bounces"
    std::uint64_t value = 0;
    std::uint64_t threshold = 0;
};

// The IPv4 /24 or IPv6 /48 an address belongs to, as text ("192.0.2.0/24",
// "2001:db8:1::/48"); nullopt if `ip` is no address.
std::optional<std::string> networkOf(const std::string& ip);

// The thresholds an account's totals pass, worst first (value/threshold), empty if none.
struct AccountTotals {
    std::uint64_t ips = 0, networks = 0, remoteRejected = 0, bounces = 0;
};
std::vector<AccountFlag> exceeded(const std::string& user, const AccountTotals& totals,
                                  const AccountSecuritySettings& settings);

class AccountSecurityStore {
public:
    virtual ~AccountSecurityStore() = default;
    // Writes `batch` (stamped `now`) and, if settings.enabled, evaluates the thresholds of
    // the accounts in it; appends to `newlyFlagged` the accounts THIS call flagged (one
    // per account, the worst reason). False if the store could not be written.
    virtual bool flush(const ActivityBatch& batch, core::TimePoint now, const AccountSecuritySettings& settings,
                       std::vector<AccountFlag>& newlyFlagged) = 0;
    // Every flagged account; nullopt if the store cannot answer (the cache is kept).
    virtual std::optional<std::vector<std::string>> flagged() = 0;
    // Clears the flag and the counters of `user`; false if the store failed.
    virtual bool release(const std::string& user) = 0;
    // Drops counters older than the window and login entries past the age/count bounds.
    virtual bool prune(core::TimePoint now, const AccountSecuritySettings& settings) = 0;
};

// One node: the same rules in memory. Thread-safe (one mutex; only the flush thread and
// tests call it). Flags do not survive a restart (held mail is then sent: a restart is an
// operator action; the queue keeps the mail either way).
class MemoryAccountSecurityStore final : public AccountSecurityStore {
public:
    bool flush(const ActivityBatch& batch, core::TimePoint now, const AccountSecuritySettings& settings,
               std::vector<AccountFlag>& newlyFlagged) override;
    std::optional<std::vector<std::string>> flagged() override;
    bool release(const std::string& user) override;
    bool prune(core::TimePoint now, const AccountSecuritySettings& settings) override;

    // The login log of `user`, newest first (at most `limit`; 0 = all).
    std::vector<LoginRecord> logins(const std::string& user, std::size_t limit) const;
    // For tests: the current totals of `user` within the window ending at `now`.
    AccountTotals totals(const std::string& user, core::TimePoint now, std::chrono::milliseconds window) const;

private:
    struct Account {
        std::map<std::string, core::TimePoint> ips;  // ip -> last successful login
        std::vector<std::pair<core::TimePoint, AccountCounts>> counts;
        std::vector<LoginRecord> logins;  // oldest first
    };
    AccountTotals totalsLocked(const Account& a, core::TimePoint now, std::chrono::milliseconds window) const;

    mutable std::mutex mutex_;
    std::map<std::string, Account> accounts_;
    std::map<std::string, AccountFlag> flags_;
};

}  // namespace postern::abuse
