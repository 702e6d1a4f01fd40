// Where compromised-account counters, flags and the login log live: PostgreSQL in a
// cluster (PgAccountSecurityStore: every node's batches meet there, a flag set by one node
// holds the account on all), or memory on a standalone node (MemoryAccountSecurityStore,
// same rules, kept in a state file: AccountSecurityStateFile.h). Both are written by
// AccountSecurity's flush thread only.
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
    std::chrono::milliseconds stateWriteInterval{60000};    // account_security.state_write_interval
    std::chrono::milliseconds window{std::chrono::hours(1)};  // account_security.window
    std::uint32_t maxIps = 20;             // account_security.max_ips (distinct IPs with a login; 0 = off)
    std::uint32_t maxNetworks = 10;        // account_security.max_networks (/24 and /48; 0 = off)
    std::uint32_t maxRemoteRejected = 50;  // account_security.max_remote_rejected (0 = off)
    std::uint32_t maxBounces = 30;         // account_security.max_bounces (0 = off)
    std::uint32_t loginLogMaxEntries = 100;                      // account_security.login_log_max_entries (0 = no log)
    std::chrono::milliseconds loginLogMaxAge{std::chrono::hours(24 * 30)};  // account_security.login_log_max_age
    // account_security.max_tracked_accounts: accounts with a login log at most; past it the
    // least recently active accounts' login logs go first (never a flag or a hold).
    std::size_t maxTrackedAccounts = 100000;
    std::size_t maxPending = 100000;       // account_security.max_pending: login entries kept while the store is down
    std::string releaseDir;                // standalone: posternctl user release drops a file here
    std::string statePath;                 // standalone: the state file (AccountSecurityStateFile.h)
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
    // The password was right (`user` is a canonical login), whatever the result: a success,
    // or one the caller's penalty check refused ("blocked"). Such an entry makes its name
    // tracked; an unverified failure is kept only for a name already tracked.
    bool verified = false;
    // The name the client gave, folded as the failed-login penalty folds it
    // (foldName(core::canonicalLogin)), when it is not `user` (a directory that answers a uid
    // login with the mail address): the penalty counts and asks knownAddress() under it.
    std::string login = {};
};

struct LoginRecord {
    core::TimePoint at;
    std::string ip, protocol, mechanism, tls, result;
    bool operator==(const LoginRecord&) const = default;
};

// Addresses kept per login name of another account's name (ActivityBatch::loginNameIps).
inline constexpr std::size_t MaxLoginNameIps = 32;

struct AccountCounts {
    std::uint64_t remoteRejected = 0;
    std::uint64_t bounces = 0;
    bool operator==(const AccountCounts&) const = default;
};

// What one node recorded since its last flush.
struct ActivityBatch {
    std::vector<LoginEvent> logins;                             // the login log (all results)
    std::map<std::string, std::set<std::string>> loginIps;      // user -> IPs with a successful login
    std::map<std::string, AccountCounts> counts;                // user -> delivery outcomes
    // A login name that is not its account's name (LoginEvent::login, folded) -> IPs it
    // logged in from successfully: the addresses that name is known from (knownAddress).
    // Recorded only while the login log is kept (account_security.login_log_max_entries).
    std::map<std::string, std::set<std::string>> loginNameIps;
    bool empty() const { return logins.empty() && loginIps.empty() && counts.empty() && loginNameIps.empty(); }
    // The accounts this batch touches for detection (loginIps and counts).
    std::vector<std::string> accounts() const;
    // Adds `older` (a batch that could not be written) in front of this one; keeps at most
    // maxLogins login entries (the newest); returns how many were dropped.
    std::size_t absorb(ActivityBatch&& older, std::size_t maxLogins);
};

// What a store dropped rather than kept (cumulative since it was made; AccountSecurity
// reports the growth after each cycle as postern_events_total{event="account_security"}).
struct AccountStoreCounters {
    // Failed, blocked or tempfailed attempts for a name that is not a tracked account (no
    // successful login, no state): counted, not logged per name (username spraying).
    std::uint64_t untrackedLogins = 0;
    // Accounts whose login log was dropped to stay within max_tracked_accounts.
    std::uint64_t evictedLogs = 0;
    bool operator==(const AccountStoreCounters&) const = default;
};

struct AccountFlag {
    std::string user;
    std::string reason;  // "ips" | "networks" | "remote_rejected" | "bounces"
    std::uint64_t value = 0;
    std::uint64_t threshold = 0;
    bool operator==(const AccountFlag&) const = default;
};

// What a single node keeps (MemoryAccountSecurityStore; its state file).
struct AccountSecurityState {
    struct Account {
        std::map<std::string, core::TimePoint> ips;  // ip -> last successful login
        std::vector<std::pair<core::TimePoint, AccountCounts>> counts;
        std::vector<LoginRecord> logins;  // oldest first
        bool operator==(const Account&) const = default;
    };
    std::map<std::string, Account> accounts;
    std::map<std::string, AccountFlag> flags;
    bool operator==(const AccountSecurityState&) const = default;
};

// The IPv4 /24 or IPv6 /48 an address belongs to, as text ("192.0.2.0/24",
// "2001:db8:1::/48"); nullopt if `ip` is no address.
std::optional<std::string> networkOf(const std::string& ip);

// The key `ip` is known under for knownAddress(): the address (IPv4, IPv4-mapped unmapped)
// or its IPv6 /ipv6Prefix network, as core::addressKey spells it; nullopt if `ip` is no
// address.
std::optional<std::string> knownAddressKey(const std::string& ip, unsigned ipv6Prefix);

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
    // the accounts in it. A login entry that is not a success ("ok") nor verified is kept only
    // for a TRACKED name: one that already has state in the store (a login log, counters, a
    // flag) or a successful or verified login in the same batch; the others are only counted (counters().untrackedLogins), so
    // a client spraying random user names creates no per-name state. Decided here, in the
    // flush thread, from what the store already holds: no directory lookup per failed login.
    // Then appends to `newlyFlagged` the accounts THIS call flagged (one
    // per account, the worst reason). False if the store could not be written.
    virtual bool flush(const ActivityBatch& batch, core::TimePoint now, const AccountSecuritySettings& settings,
                       std::vector<AccountFlag>& newlyFlagged) = 0;
    // Every flagged account; nullopt if the store cannot answer (the cache is kept).
    virtual std::optional<std::vector<std::string>> flagged() = 0;
    // Clears the flag and the counters of `user`; false if the store failed.
    virtual bool release(const std::string& user) = 0;
    // Drops counters older than the window, login entries past the age/count bounds, and
    // the login logs of the least recently active accounts past settings.maxTrackedAccounts.
    virtual bool prune(core::TimePoint now, const AccountSecuritySettings& settings) = 0;
    // What this store dropped so far (AccountStoreCounters).
    virtual AccountStoreCounters counters() const { return {}; }
    // Whether `user` logged in successfully from `ip` (an IPv6 address: from anywhere in
    // its /ipv6Prefix) as far as this store remembers: an IP counted for detection and seen
    // after `ipsSince` (account_security.window), or an "ok" entry of the login log after
    // `logSince` (login_log_max_age), or a successful login typed as `user` (compared folded:
    // foldName) for another account name (ActivityBatch::loginNameIps) after `logSince`.
    // nullopt if the store cannot answer. The failed-login penalty asks this (auth.penalty.known_address_failures)
    // only for a blocked account, under the name the client gave.
    virtual std::optional<bool> knownAddress(const std::string& user, const std::string& ip, unsigned ipv6Prefix,
                                             core::TimePoint ipsSince, core::TimePoint logSince) = 0;
    // Makes what the calls above changed durable where the store is not already (the
    // single node's flags and state files); called at the end of every flush cycle. False on
    // failure (the state stays in memory and is written at the next cycle).
    virtual bool persist() { return true; }
    // persist() at a stop: everything now, whatever a write interval says.
    virtual bool persistFinal() { return persist(); }
};

// One node: the same rules in memory. Thread-safe (one mutex; only the flush thread and
// tests call it). With a state path, the state is loaded at construction and persist()
// rewrites the file (atomically) when something changed, at most once per write interval
// (account_security.state_write_interval: the login log of 100,000 accounts is hundreds of
// MB), so counters and the login log survive a restart; a crash loses at most one interval.
// The flags are also kept in a small file of their own, `<statePath>.flags`, written at the
// flush that changes them: holds survive a crash at once, and a state file that is damaged
// (or past its size cap) loses the login log, not the holds.
class MemoryAccountSecurityStore final : public AccountSecurityStore {
public:
    MemoryAccountSecurityStore() = default;
    // Loads `statePath` if it exists. A file that does not parse is renamed to
    // `<statePath>.corrupt` and the store starts empty (event=account_security.state_corrupt,
    // at error level: the held accounts it named are no longer held). A file that exists but
    // cannot be read throws std::runtime_error (posternd refuses to start rather than send
    // held mail).
    explicit MemoryAccountSecurityStore(std::string statePath);

    bool flush(const ActivityBatch& batch, core::TimePoint now, const AccountSecuritySettings& settings,
               std::vector<AccountFlag>& newlyFlagged) override;
    std::optional<std::vector<std::string>> flagged() override;
    bool release(const std::string& user) override;
    bool prune(core::TimePoint now, const AccountSecuritySettings& settings) override;
    bool persist() override;
    bool persistFinal() override;
    // How often at most the whole state file is rewritten (0 = at every persist()). The
    // flags file is written whenever the flags change; persistFinal() writes both now.
    void setWriteInterval(std::chrono::milliseconds interval) { writeInterval_ = interval; }
    AccountStoreCounters counters() const override;
    std::optional<bool> knownAddress(const std::string& user, const std::string& ip, unsigned ipv6Prefix,
                                     core::TimePoint ipsSince, core::TimePoint logSince) override;

    // The login log of `user`, newest first (at most `limit`; 0 = all).
    std::vector<LoginRecord> logins(const std::string& user, std::size_t limit) const;
    // For tests: the current totals of `user` within the window ending at `now`.
    AccountTotals totals(const std::string& user, core::TimePoint now, std::chrono::milliseconds window) const;

    // For tests: a copy of everything kept.
    AccountSecurityState snapshot() const;

private:
    using Account = AccountSecurityState::Account;
    AccountTotals totalsLocked(const Account& a, core::TimePoint now, std::chrono::milliseconds window) const;
    // Past settings.maxTrackedAccounts accounts with a login log: drops the logs of the least
    // recently active (an account left with no counters is forgotten; flags are separate).
    void evictLocked(const AccountSecuritySettings& settings);

    mutable std::mutex mutex_;
    AccountSecurityState state_;
    std::map<std::string, Account>& accounts_ = state_.accounts;
    std::map<std::string, AccountFlag>& flags_ = state_.flags;
    bool persistNow(bool all);
    const std::string statePath_;  // "" = memory only
    const std::string flagsPath_;  // <statePath_>.flags, or ""
    bool dirty_ = false;           // changed since the last write of the state file
    bool flagsDirty_ = false;      // the flags changed since the last write of the flags file
    bool forceState_ = false;      // a release: the state file at the next persist, interval or not
    bool retryState_ = false;      // the last state file write failed: again at the next persist
    std::chrono::milliseconds writeInterval_{0};
    std::chrono::steady_clock::time_point lastWrite_{};  // of the state file
    bool writeFailing_ = false;    // the last write failed (logged once per streak)
    AccountStoreCounters counters_;
    // loginNameIps of the batches flushed: login name -> ip -> last success, at most
    // MaxLoginNameIps (the most recent) per name. In memory only (not in the state file):
    // after a restart such a name's addresses are not known until its next successful login
    // from each (a block still in force then refuses that login). Pruned with the login log
    // (login_log_max_age).
    std::map<std::string, std::map<std::string, core::TimePoint>> loginNames_;
};

}  // namespace postern::abuse
