// Compromised-account detection and the per-account login log (account_security.*).
//
// Sessions and delivery workers only RECORD events in memory (a mutex and a push: no
// statement per login or delivery). A background thread writes what was recorded every
// account_security.flush_interval in one batch (AccountSecurityStore::flush: one multi-row
// write in PostgreSQL, or the in-memory store on a standalone node), evaluates the
// thresholds for the accounts in that batch, and reads back the set of flagged accounts
// into a node-local cache that isHeld() answers from. Detection latency is therefore one
// flush interval (plus the other nodes' flush interval to see a flag set elsewhere).
//
// Counted per account over a sliding account_security.window (default 1h): distinct
// client IPs with a successful login, distinct networks among them (IPv4 /24, IPv6 /48),
// recipients refused by remote servers with a 5xx, and bounces generated. Past a
// threshold (value > max; 0 = that threshold is off) the account is flagged: its queued
// outbound mail is held (not sent, not lost), MAIL from it gets 451 4.7.1, one line
// event=account.flagged is logged by the node that flagged it. `posternctl user release`
// clears the flag and the account's counters.
//
// The login log is bounded against username spraying: a failed (blocked, tempfailed)
// attempt is kept only for a name the store already tracks (it logged in successfully, or
// has counters or a flag); attempts for other names are only counted, and at most
// account_security.max_tracked_accounts accounts keep a login log (the least recently
// active lose theirs first). See AccountSecurityStore::flush.
#pragma once

#include "abuse/AccountSecurityStore.h"
#include "core/AccountSecurity.h"
#include "core/Clock.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace postern::abuse {

class AccountSecurity final : public core::AccountHold, public core::DeliveryReport {
public:
    using FlagHook = std::function<void(const AccountFlag&)>;
    // (label, n): the store dropped n more login entries for untracked names
    // ("untracked_login") or n more accounts' login logs past the cap ("login_log_evicted").
    using CountHook = std::function<void(std::string_view label, std::uint64_t n)>;

    // `store` must outlive this object; `onFlag` is called (flush thread) once per account
    // this node flagged, after the event line is logged (metrics).
    AccountSecurity(AccountSecuritySettings settings, AccountSecurityStore& store, FlagHook onFlag = {},
                    core::Clock clock = {});
    ~AccountSecurity() override;
    AccountSecurity(const AccountSecurity&) = delete;
    AccountSecurity& operator=(const AccountSecurity&) = delete;

    // Starts the flush thread (one flush at once: reads the flagged set). stop() flushes
    // what is still recorded and joins; both idempotent.
    void start();
    // Before start(): called from the flush thread after a cycle in which the store's
    // AccountStoreCounters grew (metrics).
    void setCountHook(CountHook hook) { onCount_ = std::move(hook); }
    void stop();

    // A login attempt (any result) for the login log; a successful one (result "ok") also
    // counts its IP for detection. Never blocks on I/O. Whether a failure is kept for its
    // name is decided at the flush (untracked names are counted only).
    void recordLogin(LoginEvent event);
    void remoteRejected(const std::string& user, std::size_t recipients) override;
    void bounced(const std::string& user, std::size_t bounces) override;

    // Whether `user` logged in successfully from `ip` (IPv6: its /ipv6Prefix): recorded here
    // and not yet flushed, or remembered by the store (AccountSecurityStore::knownAddress).
    // nullopt if the store cannot answer. May run a statement: ask only when it matters.
    std::optional<bool> knownAddress(const std::string& user, const std::string& ip, unsigned ipv6Prefix);

    bool isHeld(std::string_view user) const override;
    bool holdsKnown() const override { return !settings_.enabled || heldKnown_.load(); }
    std::size_t heldCount() const;

    // One flush cycle now (the thread's body; for tests): writes the batch, evaluates,
    // applies standalone release requests, refreshes the held set. False if the store
    // failed (the batch is kept, up to max_pending login entries, for the next cycle).
    bool flushNow();

    // Login entries dropped because the store stayed unreachable past max_pending.
    std::uint64_t droppedLogins() const { return dropped_.load(); }
    const AccountSecuritySettings& settings() const { return settings_; }

private:
    struct StringHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;

    void loop();
    // Applies the standalone release requests; returns the request files to delete once
    // the store has persisted the release.
    std::vector<std::string> applyReleaseRequests();

    const AccountSecuritySettings settings_;
    AccountSecurityStore& store_;
    FlagHook onFlag_;
    CountHook onCount_;
    AccountStoreCounters reported_;  // what onCount_ was told so far (flush thread)
    core::Clock clock_;

    std::mutex pendingMutex_;  // guards pending_ and flushingKnown_ (recorders and the swap)
    ActivityBatch pending_;
    // The successful logins (user -> IPs) of the batch a flush is writing: known addresses.
    std::unordered_map<std::string, std::vector<std::string>> flushingKnown_;
    std::atomic<std::uint64_t> dropped_{0};

    std::mutex flushMutex_;  // one flush at a time
    bool finalFlush_ = false;  // stop()'s flush (after the thread has ended)
    core::TimePoint lastPrune_{};

    mutable std::shared_mutex heldMutex_;
    StringSet held_;
    std::atomic<bool> heldKnown_{false};  // held_ was read from the store at least once
    std::atomic<bool> unknownLogged_{false};

    std::mutex threadMutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool started_ = false;
    std::thread thread_;
};

}  // namespace postern::abuse
