// Failed-authentication penalty: tarpit delays and blocks per address and per account.
#include "abuse/AuthPenalty.h"

#include "core/Idna.h"

#include "abuse/MemoryPenaltyStore.h"
#include "abuse/NameFold.h"
#include "core/AuthService.h"
#include "core/Utf8.h"

#include <Poco/DigestEngine.h>
#include <Poco/SHA2Engine.h>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

namespace postern::abuse {

AuthPenalty::AuthPenalty(const AuthPenaltySettings& settings, PenaltyStorePtr store, core::Clock clock)
    : settings_(settings),
      allow_(core::NetworkList::parse(settings.allowNetworks)),
      store_(std::move(store)),
      clock_(core::clockOrSystem(std::move(clock))) {
    if (settings_.window <= std::chrono::milliseconds::zero())
        throw std::invalid_argument("auth.penalty.window must be positive");
    if (settings_.baseDelay < std::chrono::milliseconds::zero() || settings_.maxDelay < settings_.baseDelay)
        throw std::invalid_argument("auth.penalty delays must satisfy 0 <= base_delay <= max_delay");
    if (settings_.parallelWait <= std::chrono::milliseconds::zero())
        throw std::invalid_argument("auth.penalty.parallel_wait must be positive");
    if (settings_.ipv6Prefix > 128)
        throw std::invalid_argument("auth.penalty.ipv6_prefix must be 0..128");
    if (!store_)
        store_ = std::make_unique<MemoryPenaltyStore>();
}

std::string AuthPenalty::ipKey(const core::ClientAddress& client) const {
    return "ip:" + core::addressKey(client.ip, settings_.ipv6Prefix);
}

std::string AuthPenalty::knownKey(const core::ClientAddress& client, std::string_view account) const {
    // At most 6 + 46 + 1 + 325 octets: within the shared table's 400.
    return "known:" + ipKey(client) + "|" + accountKey(account);
}

std::string AuthPenalty::knownAllKey(std::string_view account) {
    return "known:" + accountKey(account);
}

std::string AuthPenalty::accountKey(std::string_view typed) {
    // Both spellings of an IDN domain are one account (the auth facade logs in with the
    // A-label), and so is every spelling a directory may take for the same name (case,
    // width, compatibility forms: "ａlice", "𝐚lice", "JÖRG" / "jörg"): else each would be a
    // fresh budget of guesses against one LDAP or Active Directory account.
    const std::string folded = foldName(core::canonicalLogin(typed));
    // A name that is not UTF-8 or longer than any address (a client can send either) cannot
    // be a PostgreSQL text key, and must not make the shared store look down: its SHA-256
    // (a different prefix: never equal to a real name's key).
    if (!core::isValidUtf8(folded) || folded.size() > core::MaxLoginLength) {
        Poco::SHA2Engine sha(Poco::SHA2Engine::SHA_256);
        sha.update(folded);
        return "user#" + Poco::DigestEngine::digestToHex(sha.digest());
    }
    return "user:" + folded;
}

std::chrono::milliseconds AuthPenalty::delayFor(std::uint32_t failures) const {
    // No tarpit (base_delay = 0), or nothing to delay: no doubling loop over a counter that
    // may be in the millions.
    if (failures == 0 || settings_.baseDelay.count() == 0)
        return std::chrono::milliseconds::zero();
    // base * 2^(f-1), computed without overflow: stop doubling once past the cap.
    auto delay = settings_.baseDelay;
    for (std::uint32_t i = 1; i < failures && delay < settings_.maxDelay; ++i)
        delay *= 2;
    return std::min(delay, settings_.maxDelay);
}

PenaltyVerdict AuthPenalty::check(const core::ClientAddress& client, std::string_view account) {
    PenaltyVerdict v;  // TempFail until both counters were read
    const core::TimePoint now = clock_();
    if (isExempt(client)) {
        // No address counter and no tarpit; the account's own block still holds (else an
        // allow-listed webmail would be an unlimited guessing proxy for every account).
        if (account.empty()) {
            v.kind = PenaltyVerdict::Kind::Allow;
            return v;
        }
        auto acct = store_->get(accountKey(account), now);
        if (!acct)
            return v;
        v = verdictFor(PenaltyCount{}, *acct, now);
        v.delay = std::chrono::milliseconds::zero();  // no tarpit, blocked or not
        return v;
    }
    // Both counters in one read (one statement for a shared store).
    auto counts = store_->getPair(ipKey(client), account.empty() ? std::string() : accountKey(account), now);
    if (!counts)
        return v;
    v = verdictFor(counts->first, counts->second, now);
    if (v.isBlocked() && !account.empty())
        exemptKnownAddress(client, account, v, now);
    return v;
}

bool AuthPenalty::mayExemptKnownAddress(const PenaltyVerdict& v, const core::ClientAddress& client) const {
    const bool ipBlocked = settings_.maxFailuresIp > 0 && v.ipFailures >= settings_.maxFailuresIp;
    // Blocked by the account's own counter (not a verdict forced by a caller).
    const bool accountBlocked =
        settings_.maxFailuresAccount > 0 && v.accountFailures >= settings_.maxFailuresAccount;
    return v.isBlocked() && accountBlocked && !ipBlocked && settings_.knownAddressFailures > 0 && known_ &&
           !isExempt(client);
}

void AuthPenalty::exemptKnownAddress(const core::ClientAddress& client, std::string_view account, PenaltyVerdict& v) {
    exemptKnownAddress(client, account, v, clock_());
}

void AuthPenalty::exemptKnownAddress(const core::ClientAddress& client, std::string_view account, PenaltyVerdict& v,
                                     core::TimePoint now) {
    if (!mayExemptKnownAddress(v, client))
        return;
    // The account's successful logins are logged under its canonical login.
    const std::optional<bool> known = known_(core::canonicalLogin(account), client.host(), settings_.ipv6Prefix);
    if (!known || !*known)
        return;  // unknown, or cannot tell: the block holds
    // This address's failures for the account, and all known addresses' together (one read).
    const auto own = store_->getPair(knownKey(client, account), knownAllKey(account), now);
    if (!own || own->first.failures >= settings_.knownAddressFailures ||
        own->second.failures >= settings_.maxFailuresAccount)
        return;
    v.kind = PenaltyVerdict::Kind::Allow;
    v.viaKnownAddress = true;
    v.knownFailures = own->first.failures;
    v.knownAllFailures = own->second.failures;
    v.blockedBy.clear();
    v.retryAfter = std::chrono::milliseconds::zero();
    v.delay = delayFor(std::max(v.ipFailures, own->first.failures));
}

PenaltyVerdict AuthPenalty::verdictFor(const PenaltyCount& ip, const PenaltyCount& acct, core::TimePoint now) const {
    PenaltyVerdict v;
    v.accountFailures = acct.failures;
    v.ipFailures = ip.failures;
    auto remaining = [now](const PenaltyCount& c) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(c.expires - now);
    };
    const bool ipBlocked = settings_.maxFailuresIp > 0 && ip.failures >= settings_.maxFailuresIp;
    const bool acctBlocked = settings_.maxFailuresAccount > 0 && acct.failures >= settings_.maxFailuresAccount;
    if (ipBlocked || acctBlocked) {
        v.kind = PenaltyVerdict::Kind::Blocked;
        v.delay = settings_.maxDelay;
        if (ipBlocked && (!acctBlocked || ip.expires >= acct.expires)) {
            v.blockedBy = "ip";
            v.retryAfter = remaining(ip);
        } else {
            v.blockedBy = "account";
            v.retryAfter = remaining(acct);
        }
        return v;
    }
    v.kind = PenaltyVerdict::Kind::Allow;
    v.delay = delayFor(std::max(ip.failures, acct.failures));
    return v;
}

bool AuthPenalty::hasLocalCounts(const core::ClientAddress& client, std::string_view account) {
    const std::string acct = account.empty() ? std::string() : accountKey(account);
    if (isExempt(client))
        return !acct.empty() && store_->holdsLocalCounts(acct, std::string(), clock_());
    return store_->holdsLocalCounts(ipKey(client), acct, clock_());
}

bool AuthPenalty::recordFailure(const core::ClientAddress& client, std::string_view account) {
    const core::TimePoint now = clock_();
    // A counter at its block threshold holds while failures go on (PenaltyStore.h).
    bool ok = isExempt(client) ||
              store_->increment(ipKey(client), now, settings_.window, settings_.maxFailuresIp).has_value();
    if (!account.empty())
        ok = store_->increment(accountKey(account), now, settings_.window, settings_.maxFailuresAccount).has_value() &&
             ok;
    return ok;
}

bool AuthPenalty::recordFailure(const core::ClientAddress& client, std::string_view account,
                                const PenaltyVerdict& verdict) {
    bool ok = recordFailure(client, account);
    if (verdict.viaKnownAddress && !account.empty()) {
        const core::TimePoint now = clock_();
        ok = store_->increment(knownKey(client, account), now, settings_.window, settings_.knownAddressFailures)
                 .has_value() &&
             ok;
        ok = store_->increment(knownAllKey(account), now, settings_.window, settings_.maxFailuresAccount).has_value() &&
             ok;
    }
    return ok;
}

bool AuthPenalty::recordSuccess(const core::ClientAddress& /*client*/, std::string_view account) {
    if (account.empty())
        return true;
    return store_->reset(accountKey(account));
}

bool AuthPenalty::recordSuccess(const core::ClientAddress& client, std::string_view account,
                                const PenaltyVerdict& verdict) {
    if (verdict.kind == PenaltyVerdict::Kind::Allow && verdict.accountFailures == 0)
        return true;
    // Let through a block on the account: the block stays for everyone else.
    if (verdict.viaKnownAddress)
        return true;
    return recordSuccess(client, account);
}

AuthPenalty::Reservation::Reservation(Reservation&& o) noexcept { *this = std::move(o); }

AuthPenalty::Reservation& AuthPenalty::Reservation::operator=(Reservation&& o) noexcept {
    if (this != &o) {
        release();
        owner_ = std::exchange(o.owner_, nullptr);
        ipKey_ = std::move(o.ipKey_);
        accountKey_ = std::move(o.accountKey_);
        othersIp = o.othersIp;
        othersAccount = o.othersAccount;
        ipGen_ = o.ipGen_;
        accountGen_ = o.accountGen_;
        verifying_ = o.verifying_;
    }
    return *this;
}

void AuthPenalty::Reservation::release() {
    AuthPenalty* owner = std::exchange(owner_, nullptr);
    if (!owner)
        return;
    bool wake = false;
    {
        std::lock_guard lock(owner->inFlightMutex_);
        if (!ipKey_.empty())
            wake = owner->give(ipKey_, verifying_);
        if (!accountKey_.empty())
            wake = owner->give(accountKey_, verifying_) || wake;
    }
    if (wake)
        owner->inFlightEnded_.notify_all();
}

std::uint32_t AuthPenalty::take(const std::string& key, std::uint64_t& gen) {
    InFlight& f = inFlight_[key];
    if (f.count == 0)
        f.gen = ++nextGen_;
    gen = f.gen;
    return f.count++;
}

bool AuthPenalty::give(const std::string& key, bool verified) {
    auto it = inFlight_.find(key);
    if (it == inFlight_.end())
        return false;
    if (--it->second.count == 0) {
        inFlight_.erase(it);  // nothing in progress any more: a change for every waiter
        return true;
    }
    // Only the end of a verification can change what a waiter is waiting for (the failures
    // counted, the verifications in progress). A login that gave its place back unverified
    // (a waiter going back to wait, a blocked one) wakes nobody: waiters that woke each
    // other that way would spin against the store for the whole wait.
    if (!verified)
        return false;
    it->second.gen = ++nextGen_;
    return true;
}

bool AuthPenalty::changed(const std::string& key, std::uint64_t gen) const {
    auto it = inFlight_.find(key);
    return it == inFlight_.end() || it->second.gen != gen;
}

AuthPenalty::Reservation AuthPenalty::reserve(const core::ClientAddress& client, std::string_view account) {
    Reservation r;
    const bool exempt = isExempt(client);
    if (exempt && account.empty())
        return r;
    if (!exempt)
        r.ipKey_ = ipKey(client);
    if (!account.empty())
        r.accountKey_ = accountKey(account);
    std::lock_guard lock(inFlightMutex_);
    if (!r.ipKey_.empty())
        r.othersIp = take(r.ipKey_, r.ipGen_);
    if (!r.accountKey_.empty())
        r.othersAccount = take(r.accountKey_, r.accountGen_);
    r.owner_ = this;
    return r;
}

bool AuthPenalty::admits(const PenaltyVerdict& v, const Reservation& r) const {
    if (!v.isAllowed())
        return false;
    auto room = [](std::uint32_t failures, std::uint32_t others, std::uint32_t limit) {
        return limit == 0 || std::uint64_t{failures} + others < limit;
    };
    // A known address past the account's block: its own counter for the account instead,
    // against the logins in progress of the account FROM THIS ADDRESS (at most the fewer of
    // the address's and the account's): blocked guesses from elsewhere must not hold the
    // owner back (they give their places back unverified and would wake nobody).
    // All known addresses together: against every login of the account in progress, so a
    // burst from many known addresses at once stays within max_failures_account. (Blocked
    // guesses are in progress only while their counters are read: they cannot fill it.)
    const bool account =
        v.viaKnownAddress
            ? room(v.knownFailures, std::min(r.othersIp, r.othersAccount), settings_.knownAddressFailures) &&
                  room(v.knownAllFailures, r.othersAccount, settings_.maxFailuresAccount)
            : room(v.accountFailures, r.othersAccount, settings_.maxFailuresAccount);
    return room(v.ipFailures, r.othersIp, settings_.maxFailuresIp) && account;
}

bool AuthPenalty::awaitRelease(Reservation& r, std::chrono::steady_clock::time_point deadline) {
    if (!r.owner_)
        return true;
    // The keys that had other logins in progress when the place was taken (what held this
    // one back), watched from the generations seen then: a verification that ended since
    // (while this login read the store) is not missed. A key this login had to itself is
    // not watched: its own release removes it, which would wake it at once, again and again.
    std::vector<std::pair<std::string, std::uint64_t>> watched;
    if (r.othersIp > 0)
        watched.emplace_back(r.ipKey_, r.ipGen_);
    if (r.othersAccount > 0 && !r.accountKey_.empty())
        watched.emplace_back(r.accountKey_, r.accountGen_);
    r.release();
    if (watched.empty())
        return true;
    std::unique_lock lock(inFlightMutex_);
    // Nothing in progress any more on a key, or a verification of it ended: check again now.
    return inFlightEnded_.wait_until(lock, deadline, [&] {
        for (const auto& [key, gen] : watched)
            if (changed(key, gen))
                return true;
        return false;
    });
}

}  // namespace postern::abuse
