// The auth core: runs logins and recipient lookups over an ordered chain of backends,
// verifies stored password hashes, equalises timing for unknown users and logs each attempt.
#pragma once

#include "api/PluginApi.h"
#include "auth/AuthCache.h"
#include "auth/HashGate.h"
#include "auth/BackendProbes.h"
#include "auth/Rehasher.h"
#include "core/AuthService.h"
#include "core/UserDirectory.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

namespace postern::auth {

// One backend in the chain. The facade does not own the Backend (a BackendHandle does);
// it must outlive the facade.
struct BackendBinding {
    std::string instance;                     // config name, e.g. "users"; used in logs
    plugins::api::Backend* backend = nullptr;
    std::vector<std::string> domains;         // domains it is authoritative for; "*" = any
    bool rehashOnLogin = false;               // replace an old-scheme hash after a login (Rehasher)
    // The backend checks passwords itself (ldap: a bind), so a real login costs no local hash:
    // an unknown or disabled user of it gets none either (its time and its need of a
    // HashGate slot would tell which accounts exist).
    bool verifiesPasswords = false;
};

// Implements both ports over the chain. Backends are asked in order, and only those
// authoritative for the address's domain (a name without '@' matches only "*").
//
// authenticate(): the login is lower-cased. UnknownUser/NotFound falls through to the next
// backend. TempFail or a throw from a backend makes the result TempFail: an outage never
// looks like a wrong password, and an earlier backend that could not answer may own the user.
// A found user: verified by the backend -> its status decides; otherwise the stored hash is
// checked with verifyPassword (Unsupported/Malformed hash -> TempFail, it is a config error).
// Disabled -> BadCredentials. No backend knows the user -> the password is still verified
// against a dummy hash (setDummyScheme) so the time does not reveal which users exist ->
// BadCredentials; not where every backend asked checks passwords itself (verifiesPasswords:
// its real logins cost no local hash either).
// One log line per attempt on "postern.auth"; never the password.
//
// Thread-safe and lock-free on the session paths: the chain is immutable after construction,
// backends are thread-safe by contract (probeBackends() locks per backend, readiness only).
// A cache, when added, sits in front of the backend calls in decide() and askLookup().
class AuthFacade final : public core::AuthService, public core::UserDirectory {
public:
    static constexpr int MaxAliasDepth = 8;
    static constexpr std::size_t MaxLoginLength = core::MaxLoginLength;

    // Domains are lower-cased here. Makes dummyHash() now, so the first unknown user does not
    // pay for it (throws std::runtime_error if that fails: start-up only).
    explicit AuthFacade(std::vector<BackendBinding> chain);

    // Optional cache in front of the backend chain (not owned; must outlive the facade).
    // Hits are logged as backend=cache with cache=hit.
    void setCache(AuthCache* cache) { cache_ = cache; }

    // auth.app_password_last_used_interval: after a login with an app password, its last use
    // is written to the backend only if the recorded one is older than this or from another
    // IP (0 = on every login). Set before serving.
    void setAppPasswordLastUsedInterval(std::chrono::milliseconds interval) { lastUsedInterval_ = interval; }
    // Optional rehash on login (not owned; must outlive the facade): after a successful login
    // against a backend with rehashOnLogin whose stored hash is in another scheme than the
    // rehasher's target (RehashPolicy.h), the password is handed to it. Never for a failed
    // login, a cache hit or an application password. Set before serving.
    void setRehasher(Rehasher* rehasher) { rehasher_ = rehasher; }
    // Optional bound on verifications at once (not owned; must outlive the facade): every
    // check of a password against a hash (also the dummy hash of an unknown user) holds a
    // slot; none in time is a temporary failure. Set before serving.
    void setHashGate(HashGate* gate) { hashGate_ = gate; }
    // The scheme of the dummy hash an unknown user's password is checked against
    // (auth.default_scheme: the one most stored hashes are in once rehashed), so that it
    // costs what a real user's check costs. Default: Argon2id. Set before serving.
    void setDummyScheme(HashScheme scheme);

    // Called once per attempt after the log line (metrics). Set before serving.
    using Observer = std::function<void(std::string_view service, std::string_view backend, std::string_view result,
                                        double seconds)>;
    void setObserver(Observer observer) { observer_ = std::move(observer); }

    core::AuthResult authenticate(const core::AuthRequest& request) override;

    // The same call, also telling which backend decided ("cache", an instance name, or "-"
    // when none knew the user), the result word of the log line and its detail.
    // For `posternctl auth test`; behaviour, logging and caching are those of authenticate().
    struct Explanation {
        std::string backend = "-";
        std::string result;
        std::string detail;
    };
    core::AuthResult authenticate(const core::AuthRequest& request, Explanation& explanation);

    // Yes if a backend that may be authoritative for the domain says Ok; else TempFail if
    // any of them could not answer; else No.
    core::Answer isLocalDomain(const std::string& domain) override;

    // Resolves aliases recursively (depth <= MaxAliasDepth, deduplicated, loop-safe).
    // Local mailboxes -> mailboxes (record.mailbox or "<domain>/<localpart>"); destinations in
    // non-local domains -> forwards. Yes if anything is deliverable; No if the address (or every
    // destination) is unknown or disabled; TempFail if any backend could not answer or the alias
    // chain is deeper than MaxAliasDepth (a config error the operator must see).
    core::RecipientLookup lookupRecipient(const std::string& address) override;

    // Readiness: can each backend of the chain answer a real query now (its probe(), cached
    // for BackendProbes::DefaultMaxAge, at most one probe per backend at a time)? In chain
    // order. May wait for a probe in progress, at most the backend's own timeout.
    std::vector<BackendHealth> probeBackends() { return probes_.check(); }
    // The last answers of those probes, without probing (BackendProbes::lastKnown).
    std::vector<BackendHealth> lastProbedBackends() const { return probes_.lastKnown(); }

    // "<domain>/<localpart>", or the name itself if it has no '@'.
    static std::string defaultMailbox(const std::string& user);

private:
    AuthCache* cache_ = nullptr;
    Rehasher* rehasher_ = nullptr;
    HashGate* hashGate_ = nullptr;
    std::string dummy_;  // setDummyScheme's; empty: dummyHash()
    // verifyPassword under a HashGate slot (throws HashesBusy).
    VerifyResult verify(std::string_view password, std::string_view stored);
    const std::string& dummy() const { return dummy_.empty() ? dummyHash() : dummy_; }
    Observer observer_;
    std::chrono::milliseconds lastUsedInterval_{std::chrono::minutes(15)};

    enum class Outcome { Ok, BadPassword, UnknownUser, Disabled, TempFail };

    // A rehash the login qualifies for, handed to the rehasher only if the outcome is Ok.
    struct RehashDue {
        plugins::api::Backend* backend = nullptr;
        std::string user;
        std::string oldHash;
        std::string fromScheme;
        bool verifiedByBackend = false;
    };

    struct Decision {
        Decision() = default;
        Decision(Outcome o, std::string b, std::string d) : outcome(o), backend(std::move(b)), detail(std::move(d)) {}
        Outcome outcome = Outcome::TempFail;
        std::string backend = "-";
        std::string detail;
        // App passwords: the id of the one used (log, cache limits), or a refusal.
        std::string appPasswordId;
        std::int64_t appPasswordExpires = 0;
        bool appPasswordIpBound = false;  // the success holds for this client address only
                                          // (app password networks, allow_nets)
        // Not to be remembered by the negative cache: the answer depends on the client IP or
        // the time (a refusal).
        bool refused = false;
        // A failure read from a replica that may lag behind a password change (or an account
        // enabled again) by up to this much: remembered no longer than that.
        std::optional<std::chrono::milliseconds> negativeMaxAge;
    };
    // After a login with an app password: record its use if that changes materially.
    void touchAppPassword(const BackendBinding& binding, const std::string& login, const std::string& clientIp,
                          const plugins::api::AuthAnswer& answer);

    struct LookupResult {
        plugins::api::Status status = plugins::api::Status::TempFail;
        plugins::api::LookupAnswer answer;
        std::string backend;
        std::string address;  // the spelling the backend answered for (A- or U-label domain)
    };

    struct Expansion;

    Decision decide(const core::AuthRequest& request, const std::string& login, core::AuthResult& result,
                    std::optional<RehashDue>& rehash);
    bool isAuthoritative(const BackendBinding& binding, const std::string& domain) const;
    LookupResult askLookup(const std::string& address);
    core::Answer resolve(const std::string& address, int depth, Expansion& expansion);

    const std::vector<BackendBinding> chain_;
    BackendProbes probes_;  // after chain_: built from it
};

}  // namespace postern::auth
