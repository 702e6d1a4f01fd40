// Failed-authentication penalty (SMTP AUTH, RFC 4954; POP3 USER/PASS and AUTH, RFC 1939,
// RFC 5034): a growing delay per failure (tarpit) and, past a limit, a block per client
// address and per account until the client has been quiet for a window.
#pragma once

#include "core/Clock.h"
#include "core/Network.h"
#include "abuse/PenaltyStore.h"
#include "core/ClientAddress.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <optional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::abuse {

// Set from the auth.penalty.* keys (app/ModuleSettings.cpp); their one default lives in the
// key table (server/config/ConfigSchema.cpp), so the members here are value-initialised.
struct AuthPenaltySettings {
    std::chrono::milliseconds window{};      // set from auth.penalty.window
    std::uint32_t maxFailuresIp = 0;         // set from auth.penalty.max_failures_ip; 0 = never block
    std::uint32_t maxFailuresAccount = 0;    // set from auth.penalty.max_failures_account; 0 = never block
    std::chrono::milliseconds baseDelay{};   // set from auth.penalty.base_delay
    std::chrono::milliseconds maxDelay{};    // set from auth.penalty.max_delay
    std::string allowNetworks;               // set from auth.penalty.allow_networks: CIDR list, "" = none
    unsigned ipv6Prefix = 0;                 // set from auth.penalty.ipv6_prefix: IPv6 clients keyed by /N
    std::chrono::milliseconds parallelWait{};  // set from auth.penalty.parallel_wait
    // set from auth.penalty.known_address_failures: failures an address the account is known
    // from may make while the account is blocked (0 = such addresses are blocked too)
    std::uint32_t knownAddressFailures = 0;

    bool operator==(const AuthPenaltySettings&) const = default;
};

struct PenaltyVerdict {
    enum class Kind {
        Allow,     // wait `delay`, then verify the credentials
        Blocked,   // wait `delay`, then answer without verifying (SMTP 454 4.7.0, POP3
                   // -ERR [SYS/TEMP] and close), the same for any password: a correct one
                   // must not be told apart, or the block becomes a password oracle
        TempFail,  // the store could not answer: SMTP 454 4.7.0, POP3 -ERR [SYS/TEMP]
    };
    Kind kind = Kind::TempFail;  // fail closed
    std::chrono::milliseconds delay{0};
    // Blocked: what blocks ("ip" or "account") and how long until it lifts, for the log.
    std::string blockedBy;
    std::chrono::milliseconds retryAfter{0};
    // The account's live failures when checked (0 = nothing to clear after a success), and
    // the address's.
    std::uint32_t accountFailures = 0;
    std::uint32_t ipFailures = 0;
    // Allow although the account is blocked: the client's address is one the account logged
    // in from (AuthPenalty's known-address rule). knownFailures: that address's failures for
    // this account, counted apart (the "known:" key).
    bool viaKnownAddress = false;
    std::uint32_t knownFailures = 0;
    std::uint32_t knownAllFailures = 0;  // all known addresses' failures for the account

    bool isAllowed() const { return kind == Kind::Allow; }
    bool isBlocked() const { return kind == Kind::Blocked; }
};

// Counters per client address (IPv4 exact, IPv6 by `ipv6Prefix`) and per account (accountKey:
// the domain's A-label and the name folded, so "Bob@X", "bob@x" and a fullwidth "ｂob@x" share
// one counter). Failures count within `window` of a counter's first one; once a counter
// reaches its block limit, until `window` after its most recent failure (PenaltyStore.h).
//
// delay: with f = the larger of the address's and the account's failures, 0 when f == 0,
// else min(baseDelay * 2^(f-1), maxDelay): 1 s, 2 s, 4 s, 8 s, 8 s, ... by default.
// Blocked: the address has >= maxFailuresIp failures or the account >= maxFailuresAccount
// (so the 21st attempt for an account, or the 101st from an address, within the window is
// refused with the defaults); delay is then
// maxDelay. Clients in allowNetworks have no address counter and no delay; the account
// counter still counts their failures and blocks the account (an allow-listed webmail must
// not become an unlimited password-guessing proxy; Dovecot's trusted networks likewise keep
// per-account policy).
//
// Known addresses (auth.penalty.known_address_failures > 0 and a KnownAddresses check set):
// an account blocked by failures from elsewhere stays open to the addresses it logged in
// from successfully (account_security's detection IPs and login log; IPv6 by ipv6Prefix), so
// a bot that knows a customer's address cannot lock the customer's own devices out by
// guessing (as "smart lockout" keeps familiar and unfamiliar locations apart). Such an
// address gets its own counter for the account ("known:<account key>|<address key>"): past
// knownAddressFailures failures in the window it is blocked like any other, and all known
// addresses of the account together stop at max_failures_account ("known:<account key>"):
// an attacker behind the same carrier NAT or VPN exits as the owner does not get five
// guesses per shared address. Known goes by the name the client logs in with: the
// account's successes (login log, detection IPs) under the name the directory returned, and
// a login name the directory answers with another name (a uid answered with a mail
// address) by the addresses that name logged in from (ActivityBatch::loginNameIps). Its successes
// do not clear the account's counter (the block holds for everyone else). The address's own
// block (max_failures_ip) and the tarpit still apply; allow-listed networks (one address,
// many people) get no exemption. The check runs only for a blocked account: one store
// question (and one counter read) per refused-or-exempted attempt, none otherwise.
//
// Thread-safe (the store is); owns the store. Blocking only as far as the store is.
class AuthPenalty {
public:
    // (canonical login, client address text, ipv6Prefix) -> whether the account logged in
    // from there; nullopt = cannot tell (the account stays blocked).
    using KnownAddresses =
        std::function<std::optional<bool>(const std::string& user, const std::string& ip, unsigned ipv6Prefix)>;

    // A login of one address and account being verified on this node: taken before the
    // password is checked, given back once a failure is counted (or on success). A failure
    // is counted only after its verification, so without this N parallel guesses would all
    // be verified before the first one counts. `othersIp`/`othersAccount`: the logins of
    // the same address/account already in progress when this one was taken; admits()
    // counts them as failures. Movable, not copyable; releases itself when destroyed.
    class Reservation {
    public:
        Reservation() = default;
        Reservation(Reservation&& o) noexcept;
        Reservation& operator=(Reservation&& o) noexcept;
        Reservation(const Reservation&) = delete;
        Reservation& operator=(const Reservation&) = delete;
        ~Reservation() { release(); }
        // Gives the place back; wakes the waiters when this login was verifying (or was the
        // last one in progress).
        void release();
        bool contended() const { return othersIp > 0 || othersAccount > 0; }
        // The password is being checked now (its end may change what waiters wait for).
        void markVerifying() { verifying_ = true; }

        std::uint32_t othersIp = 0;
        std::uint32_t othersAccount = 0;

    private:
        friend class AuthPenalty;
        AuthPenalty* owner_ = nullptr;
        std::string ipKey_;
        std::string accountKey_;  // "" = none
        std::uint64_t ipGen_ = 0, accountGen_ = 0;
        bool verifying_ = false;
    };

    // store: nullptr = a MemoryPenaltyStore; clock: default system_clock::now.
    // Throws std::invalid_argument on bad settings (window <= 0, parallelWait <= 0, negative
    // delays, maxDelay < baseDelay, ipv6Prefix > 128, a bad allow_networks entry).
    explicit AuthPenalty(const AuthPenaltySettings& settings, PenaltyStorePtr store = nullptr, core::Clock clock = {});
    // Before the first login; without it no address is known.
    void setKnownAddresses(KnownAddresses known) { known_ = std::move(known); }

    // Before verifying a login. `account` as the client sent it ("" if not known yet: only
    // the address is checked).
    PenaltyVerdict check(const core::ClientAddress& client, std::string_view account);
    // After the backend said BadCredentials (not after TempFail: an outage is not the
    // client's fault; not after Blocked: nothing was verified). false: the store failed.
    bool recordFailure(const core::ClientAddress& client, std::string_view account);
    // The same after check() gave `verdict`: a failure let through as a known address also
    // counts on that address's own counter for the account.
    bool recordFailure(const core::ClientAddress& client, std::string_view account, const PenaltyVerdict& verdict);
    // After a successful login: clears the account's counter; the address keeps its
    // failures (one good login must not launder a brute force over many accounts).
    // false: the store failed.
    bool recordSuccess(const core::ClientAddress& client, std::string_view account);
    // The same after check() gave `verdict`: writes only when the account had failures then
    // (no write where nothing changes). A failure counted on another node between check()
    // and here is not cleared; it expires with its window (errs toward blocking).
    bool recordSuccess(const core::ClientAddress& client, std::string_view account, const PenaltyVerdict& verdict);

    bool isExempt(const core::ClientAddress& client) const { return allow_.contains(client.ip); }
    // Whether this node counted failures of the address or account that the shared store's
    // own statements do not see (during an outage): a caller that checks the penalty in
    // its own statement must then check() here too.
    bool hasLocalCounts(const core::ClientAddress& client, std::string_view account);

    // Takes a place among the logins of this address and account in progress on this node
    // (an exempt client: an empty reservation).
    Reservation reserve(const core::ClientAddress& client, std::string_view account);
    // Whether an Allow verdict read AFTER `r` was taken leaves room for one more guess when
    // every other login in progress counts as a failure: failures + others < the limit.
    // (Each earlier guess is then either counted in the store or among the others, so at
    // most max_failures guesses of one address/account are verified on this node.)
    bool admits(const PenaltyVerdict& v, const Reservation& r) const;
    // Gives `r` back and waits until another login of its address or account ends, or
    // `deadline`; false on the deadline. The caller then reserves and checks again.
    bool awaitRelease(Reservation& r, std::chrono::steady_clock::time_point deadline);
    // Store keys: "ip:192.0.2.7", "ip:2001:db8:1:2::/64", "user:bob@example.test"; a name
    // that is not UTF-8 or longer than core::MaxLoginLength: "user#<SHA-256 hex>".
    std::string ipKey(const core::ClientAddress& client) const;
    static std::string accountKey(std::string_view account);
    // "known:<ipKey>|<accountKey>": a known address's failures for one account;
    // "known:<accountKey>": all its known addresses' failures together (capped at
    // max_failures_account: many shared addresses the owner used are no unlimited budget).
    // (An ipKey starts "ip:", an accountKey "user": the two kinds never meet.)
    std::string knownKey(const core::ClientAddress& client, std::string_view account) const;
    static std::string knownAllKey(std::string_view account);

    const AuthPenaltySettings& settings() const { return settings_; }
    PenaltyStore& store() { return *store_; }

private:
    std::chrono::milliseconds delayFor(std::uint32_t failures) const;
    // The verdict for the counters of the address and the account (check()'s rules).
    PenaltyVerdict verdictFor(const PenaltyCount& ip, const PenaltyCount& account, core::TimePoint now) const;
    // A verdict blocked by the account alone, for a client the account is known from and
    // whose own counter for it has room: Allow (viaKnownAddress). Else `v` unchanged.
    void exemptKnownAddress(const core::ClientAddress& client, std::string_view account, PenaltyVerdict& v,
                            core::TimePoint now);

public:
    // The verdict for counters read elsewhere (ClusterPop3Login reads them in its own
    // statement): the same rules as check().
    PenaltyVerdict verdictFromCounts(const PenaltyCount& ip, const PenaltyCount& account) const {
        return verdictFor(ip, account, clock_());
    }
    // Whether `v` is blocked by the account's counter alone (not the address's, not a
    // verdict forced by the caller) while known addresses may pass: exemptKnownAddress()
    // then asks whether the client is one.
    bool mayExemptKnownAddress(const PenaltyVerdict& v, const core::ClientAddress& client) const;
    // check()'s known-address rule on a verdict read elsewhere (ClusterPop3Login's statement):
    // Allow with viaKnownAddress, or `v` unchanged. The same store questions check() asks
    // after its counter read (the known-address check, then the address's own counters), so
    // a right and a wrong password cost the same round trips.
    void exemptKnownAddress(const core::ClientAddress& client, std::string_view account, PenaltyVerdict& v);
    core::TimePoint now() const { return clock_(); }

private:

    // The logins in progress per key, and a generation that changes when one ends (an
    // absent key has none in progress).
    struct InFlight {
        std::uint32_t count = 0;
        std::uint64_t gen = 0;
    };
    std::uint32_t take(const std::string& key, std::uint64_t& gen);  // inFlightMutex_ held
    // Returns whether waiters must look again. inFlightMutex_ held.
    bool give(const std::string& key, bool verified);
    bool changed(const std::string& key, std::uint64_t gen) const;   // inFlightMutex_ held

    AuthPenaltySettings settings_;
    core::NetworkList allow_;
    PenaltyStorePtr store_;
    core::Clock clock_;
    KnownAddresses known_;
    std::mutex inFlightMutex_;
    std::condition_variable inFlightEnded_;
    std::unordered_map<std::string, InFlight> inFlight_;
    std::uint64_t nextGen_ = 0;
};

}  // namespace postern::abuse
