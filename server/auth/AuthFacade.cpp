// The auth core: runs logins and recipient lookups over an ordered chain of backends,
// verifies stored password hashes, equalises timing for unknown users and logs each attempt.
#include "auth/AuthFacade.h"

#include "core/Idna.h"
#include "core/LogValue.h"
#include "core/Utf8.h"
#include "core/EventLine.h"
#include "core/MailboxLocation.h"
#include "api/AppPassword.h"
#include "api/SizeText.h"

#include "auth/PasswordScheme.h"
#include "auth/RehashPolicy.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <optional>
#include <map>
#include <set>
#include <utility>

namespace postern::auth {

namespace api = plugins::api;

namespace {

// An answer read from a replica (api::ReplicaReadAttribute, its value the replica's lag bound
// in milliseconds): how long a failure based on it may be remembered; none otherwise.
std::optional<std::chrono::milliseconds> replicaLagBound(const api::AuthAnswer& answer) {
    auto it = answer.record.extra.find(api::ReplicaReadAttribute);
    if (it == answer.record.extra.end()) return std::nullopt;
    long long ms = 0;
    const auto* end = it->second.data() + it->second.size();
    if (std::from_chars(it->second.data(), end, ms).ptr != end || ms < 0) ms = 0;  // unreadable: not at all
    return std::chrono::milliseconds(ms);
}

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.auth");
    return l;
}

// Domains are compared in one form, A-labels lower-case (core/Idna.h); the address's local
// part is only ASCII-lower-cased (UTF-8 octets untouched).
std::string asciiDomain(const std::string& domain) {
    auto a = postern::core::domainToAscii(domain);
    return a ? *a : domain;
}

// The same address with its domain in U-label form, for a backend that stores it so; empty
// when there is no such other spelling.
std::string unicodeSpelling(const std::string& address) {
    auto at = address.rfind('@');
    if (at == std::string::npos) return {};
    auto u = postern::core::domainToUnicode(address.substr(at + 1));
    return u ? address.substr(0, at + 1) + *u : std::string();
}

std::string domainOf(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : address.substr(at + 1);
}

// Control characters (and DEL); with spaceToo, the space as well. A login allows no spaces
// (Dovecot's auth_username_chars has none): a directory may ignore them (LDAP's
// caseIgnoreIA5Match drops leading ones), so " bob@x.org" would reach bob's entry under a
// penalty counter of its own.
bool hasControlChars(const std::string& s, bool spaceToo = false) {
    const unsigned char last = spaceToo ? 0x20 : 0x1f;
    return std::any_of(s.begin(), s.end(), [last](unsigned char c) { return c <= last || c == 0x7f; });
}

void pushUnique(std::vector<std::string>& v, const std::string& s) {
    if (std::find(v.begin(), v.end(), s) == v.end()) {
        v.push_back(s);
    }
}

// The user's quota in bytes from the backend's "quota" attribute (PostgreSQL's user_query
// 4th column, a passwd-file line's quota= field): bytes, or B/K/M/G as posternctl's --quota.
// nullopt for none (absent, empty, 0 or negative, as PostfixAdmin's -1). A value that is not
// a size is logged and enforces nothing: a limit, not an access rule.
std::optional<std::uint64_t> quotaOf(const postern::plugins::api::UserRecord& record, const std::string& rcpt,
                                     const std::string& address, const std::string& backend) {
    auto it = record.extra.find("quota");
    if (it == record.extra.end()) return std::nullopt;
    bool bad = false;
    auto quota = postern::plugins::api::quotaBytesOf(it->second, &bad);
    if (bad) {
        logger().error(postern::core::EventLine("rcpt.bad_quota")
                           .add("rcpt", rcpt)
                           .add("address", address)
                           .add("backend", backend)
                           .text("quota", it->second)
                           .str());
    }
    return quota;
}

// Dovecot's allow_nets extra field: networks (address or address/prefix) separated by
// commas or spaces. True if clientIp is inside one of them; an empty list, an item that does
// not parse ("local": a UNIX socket) and an unknown client address match nothing, as in
// Dovecot (fail closed).
bool allowedFrom(std::string_view nets, const std::string& clientIp) {
    namespace apppw = postern::plugins::api::apppw;
    unsigned char ip[16];
    if (!apppw::parseAddress(clientIp, ip)) return false;
    std::string list(nets);
    std::replace(list.begin(), list.end(), ' ', ',');
    for (const auto& item : apppw::splitList(list)) {
        auto net = apppw::Network::parse(item);
        if (net && net->contains(ip)) return true;
    }
    return false;
}

// The same IP address however it is written: PostgreSQL's host() and POCO compress another
// run of zeros in some IPv6 addresses ("2001:0:0:1::1" / "2001::1:0:0:0:1").
bool sameAddress(const std::string& a, const std::string& b) {
    if (a == b) return true;
    unsigned char x[16], y[16];
    namespace apppw = postern::plugins::api::apppw;
    return apppw::parseAddress(a, x) && apppw::parseAddress(b, y) && std::equal(x, x + 16, y);
}

}  // namespace

struct AuthFacade::Expansion {
    std::set<std::string> visited;
    // Domains already known in this expansion: asked once each, and a domain whose address
    // a backend just resolved is local (its lookup answered for it) - so an alias to a
    // mailbox of its own domain costs no second domain query.
    std::map<std::string, core::Answer> domains;
    std::vector<std::string> mailboxes;
    std::vector<std::string> forwards;
    std::map<std::string, std::uint64_t> quotas;  // of the mailboxes with one (the smallest if shared)
    std::string top;
};

AuthFacade::AuthFacade(std::vector<BackendBinding> chain)
    : chain_([&chain] {
          for (auto& b : chain) {
              for (auto& d : b.domains) {
                  d = d == "*" ? d : asciiDomain(core::asciiLower(d));
              }
          }
          return std::move(chain);
      }()),
      probes_([this] {
          std::vector<std::pair<std::string, api::Backend*>> backends;
          for (const auto& b : chain_) {
              backends.emplace_back(b.instance, b.backend);
          }
          return backends;
      }()) {
    dummyHash();
}

void AuthFacade::setDummyScheme(HashScheme scheme) { dummy_ = makeDummyHash(scheme); }

std::string AuthFacade::defaultMailbox(const std::string& user) {
    auto at = user.rfind('@');
    if (at == std::string::npos) {
        return user;
    }
    return user.substr(at + 1) + "/" + user.substr(0, at);
}

bool AuthFacade::isAuthoritative(const BackendBinding& binding, const std::string& domain) const {
    if (binding.backend == nullptr) {
        return false;
    }
    return std::any_of(binding.domains.begin(), binding.domains.end(),
                       [&](const std::string& d) { return d == "*" || (!domain.empty() && d == domain); });
}

core::AuthResult AuthFacade::authenticate(const core::AuthRequest& request) {
    Explanation ignored;
    return authenticate(request, ignored);
}

core::AuthResult AuthFacade::authenticate(const core::AuthRequest& request, Explanation& explanation) {
    const auto start = std::chrono::steady_clock::now();
    // The domain in its A-label form, as stored and as recipients are looked up: a login
    // typed with the U-label is the same account (and the same cache entry).
    const std::string login = core::canonicalLogin(request.user);
    core::AuthResult result;  // TempFail until decide() sets Ok or BadCredentials
    Decision decision;
    std::optional<RehashDue> rehash;  // set by decide() for an Ok login with an old-scheme hash
    AuthCache::Hit hit = AuthCache::Hit::Miss;
    std::uint64_t generation = 0;  // the user's, before the backend is asked
    if (cache_)
        hit = cache_->find(request.service, login, request.password, result.identity, request.client.host(), &generation);
    if (hit == AuthCache::Hit::Positive) {
        // A success from memory still passes the hash gate (without hashing): while guesses
        // get 454 from a saturated gate (which the penalty does not count), the right one must
        // not get 235 from the cache (review finding: unlimited guessing against a user who
        // logged in lately).
        try {
            HashGate::Slot pass(hashGate_);
            decision = Decision{Outcome::Ok, "cache", ""};
        } catch (const HashesBusy& e) {
            decision = Decision{Outcome::TempFail, "cache", e.what()};
        }
    } else if (hit == AuthCache::Hit::Negative) {
        decision = Decision{Outcome::BadPassword, "cache", ""};
    } else try {
        decision = decide(request, login, result, rehash);
    } catch (const HashesBusy& e) {
        decision = Decision{Outcome::TempFail, decision.backend, e.what()};
    } catch (const std::exception& e) {
        decision = Decision{Outcome::TempFail, decision.backend, std::string("internal error: ") + e.what()};
    } catch (...) {
        decision = Decision{Outcome::TempFail, decision.backend, "internal error"};
    }

    // Fail closed: the status follows only from the outcome, set in one place.
    const char* resultName = "tempfail";
    switch (decision.outcome) {
    case Outcome::Ok:
        result.status = core::AuthStatus::Ok;
        resultName = "ok";
        break;
    case Outcome::BadPassword:
        resultName = "bad_password";
        break;
    case Outcome::UnknownUser:
        resultName = "unknown_user";
        break;
    case Outcome::Disabled:
        resultName = "disabled";
        break;
    case Outcome::TempFail:
        break;
    }
    if (decision.outcome == Outcome::BadPassword || decision.outcome == Outcome::UnknownUser ||
        decision.outcome == Outcome::Disabled) {
        result.status = core::AuthStatus::BadCredentials;
        result.identity = {};
    } else if (decision.outcome == Outcome::TempFail) {
        result.status = core::AuthStatus::TempFail;
        result.identity = {};
    }

    if (cache_ && hit == AuthCache::Hit::Miss) {
        // Only definite answers are cached; a TempFail must be asked again next time.
        if (decision.outcome == Outcome::Ok) {
            AuthCache::Limits limits;
            limits.seenGeneration = generation;
            if (decision.appPasswordIpBound) limits.boundIp = request.client.host();
            if (decision.appPasswordExpires != 0) {
                const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                                     std::chrono::system_clock::now().time_since_epoch()).count();
                limits.maxAge = std::chrono::seconds(std::max<std::int64_t>(0, decision.appPasswordExpires - now));
            }
            cache_->storePositive(request.service, login, request.password, result.identity, limits);
        } else if (result.status == core::AuthStatus::BadCredentials) {
            // A failure the backend just gave clears the user's cached successes (the
            // password may have changed). First, so the negative entry stored next is of the
            // new generation: stored before, it was stale at once and never answered.
            cache_->invalidateUser(login);
            // A refusal may depend on the client IP or the time: not remembered.
            if (!decision.refused)
                cache_->storeNegative(request.service, login, request.password, decision.negativeMaxAge);
        }
    }

    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start).count();
    core::EventLine event =
        core::EventLine::inSession(request.sessionId, decision.outcome == Outcome::Ok ? "auth.ok" : "auth.fail");
    event.add("svc", request.service)
        .add("ip", request.client.host())
        .add("user", login)
        .add("backend", decision.backend)
        .add("result", resultName)
        .add("ms", ms);
    if (cache_) event.add("cache", hit == AuthCache::Hit::Miss ? "miss" : "hit");
    if (!decision.appPasswordId.empty()) event.add("app_password", decision.appPasswordId);
    if (!decision.detail.empty()) event.text("detail", decision.detail);
    const std::string& line = event.str();
    explanation = Explanation{decision.backend, resultName, decision.detail};
    switch (decision.outcome) {
    case Outcome::Ok: logger().information(line); break;
    case Outcome::TempFail: logger().error(line); break;
    default: logger().notice(line); break;
    }
    // Rehash on login: only now that the outcome is a success (never for a failed login).
    if (rehasher_ && decision.outcome == Outcome::Ok && rehash) {
        RehashDue& r = *rehash;
        try {
            rehasher_->submit(Rehasher::Job{decision.backend, r.backend, std::move(r.user), request.password,
                                            std::move(r.oldHash), std::move(r.fromScheme), r.verifiedByBackend});
        } catch (...) {
            // Out of memory queueing it: the login has succeeded regardless; the next one retries.
        }
    }
    if (observer_) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        observer_(request.service, decision.backend, resultName, seconds);
    }
    return result;
}

AuthFacade::Decision AuthFacade::decide(const core::AuthRequest& request, const std::string& login,
                                        core::AuthResult& result, std::optional<RehashDue>& rehash) {
    Decision d;
    // A name no backend could hold (not UTF-8 either: PostgreSQL's text, LDAP's strings and
    // SMTPUTF8 addresses are UTF-8; asking a backend would turn it into a query error and a
    // temporary failure): still spend the time of a real check.
    // Nor an address with an empty local part or domain: a directory that finds "bob" by
    // %n finds "bob@" too, and each spelling would have a failed-login counter of its own.
    // Nor a name with a character LDAP matching drops or reads as a space (a soft hyphen,
    // a no-break space: "alice<U+00A0>" finds alice's entry) for the same reason.
    const std::size_t at = login.find('@');
    if (login.empty() || login.size() > MaxLoginLength || hasControlChars(login, /*spaceToo=*/true) ||
        !core::isValidUtf8(login) || core::hasInsignificantCharacters(login) ||
        (at != std::string::npos && (at == 0 || at + 1 == login.size()))) {
        verify(request.password, dummy());
        d.outcome = Outcome::UnknownUser;
        d.detail = "invalid user name";
        return d;
    }
    const std::string domain = asciiDomain(domainOf(login));  // binding domains are A-labels
    const std::string clientIp = request.client.host();

    bool onlyVerifying = true;  // every backend asked checks passwords itself
    // A backend of the chain that could be asked for this login checks a local hash: then a
    // verifying backend's (LDAP's) answer passes the hash gate too, once, as every other
    // outcome does (a hash user's check, an unknown name's dummy check): a failure pays the
    // dummy check under it, a success just passes. With auth.max_parallel_hashes saturated a
    // directory user then gets 454 whether the password is right or wrong, as an unknown name
    // does (review findings: 535 for a directory user and 454 for an unknown name, an
    // existence oracle; then a wrong password 454, which the failed-login penalty does not
    // count, and the right one 235: unlimited guessing). The slot is taken after the directory
    // has answered, never held across its network waits.
    const bool hashingAsked = std::any_of(chain_.begin(), chain_.end(), [&](const BackendBinding& b) {
        return !b.verifiesPasswords && isAuthoritative(b, domain);
    });
    for (const auto& binding : chain_) {
        if (!isAuthoritative(binding, domain)) {
            continue;
        }
        onlyVerifying = onlyVerifying && binding.verifiesPasswords;
        d.backend = binding.instance;
        api::AuthAnswer answer;
        std::string askedAs = login;  // the spelling the backend answered for (its writes use it)
        std::optional<HashGate::Slot> slot;  // a verifying backend's pass of the gate in a mixed chain
        try {
            answer = binding.backend->authenticate(login, request.password, request.service, clientIp);
            if (answer.status == api::Status::UnknownUser || answer.status == api::Status::NotFound) {
                // The backend may hold the U-label spelling of the domain (as for lookups).
                if (std::string other = unicodeSpelling(login); !other.empty()) {
                    answer = binding.backend->authenticate(other, request.password, request.service, clientIp);
                    askedAs = std::move(other);
                }
            }
        } catch (const std::exception& e) {
            return {Outcome::TempFail, binding.instance, std::string("backend threw: ") + e.what()};
        } catch (...) {
            return {Outcome::TempFail, binding.instance, "backend threw"};
        }
        if (binding.verifiesPasswords && hashingAsked &&
            (answer.status == api::Status::Ok || answer.status == api::Status::BadCredentials ||
             answer.status == api::Status::Disabled))
            slot.emplace(hashGate_);  // HashesBusy: TempFail (uncounted, as for every login then)

        switch (answer.status) {
        case api::Status::UnknownUser:
        case api::Status::NotFound:
            continue;
        case api::Status::TempFail:
            return {Outcome::TempFail, binding.instance, answer.detail};
        case api::Status::Disabled:
            // Same cost as a real check, so a disabled account is not told apart by time
            // (none where real checks cost no local hash: the backend's own).
            if (slot)
                (void)verifyPassword(request.password, dummy());  // its slot is held already
            else if (!binding.verifiesPasswords)
                verify(request.password, answer.record.passwordHash.empty()
                                                 ? std::string_view(dummy())
                                                 : std::string_view(answer.record.passwordHash));
            {
                Decision disabled{Outcome::Disabled, binding.instance, answer.detail};
                disabled.negativeMaxAge = replicaLagBound(answer);  // enabled a moment ago?
                return disabled;
            }
        case api::Status::BadCredentials:
            if (slot) (void)verifyPassword(request.password, dummy());  // its slot is held already
            return {Outcome::BadPassword, binding.instance, answer.detail};
        case api::Status::Ok:
            break;
        }
        slot.reset();

        Decision ok{Outcome::Ok, binding.instance, {}};
        ok.appPasswordId = answer.appPasswordId;
        ok.appPasswordExpires = answer.appPasswordExpires;
        ok.appPasswordIpBound = answer.appPasswordIpBound;
        if (!answer.verified) {
            VerifyResult v = verify(request.password, answer.record.passwordHash);
            if (v == VerifyResult::Mismatch) {
                Decision bad{Outcome::BadPassword, binding.instance, {}};
                bad.appPasswordId = answer.appPasswordId;
                // A replica's hash may be the one a password change just replaced: a wrong
                // password, remembered no longer than the replica may lag (review finding:
                // the new password was refused from the negative cache for its whole TTL).
                bad.negativeMaxAge = replicaLagBound(answer);
                return bad;
            }
            if (v != VerifyResult::Match) {
                // A hash we cannot read is the operator's problem, not a wrong password.
                return {Outcome::TempFail, binding.instance,
                        "stored password hash: " + std::string(toString(v))};
            }
        }
        // The password matched but the backend refuses it here (app password scope, expiry,
        // networks; a main password where app passwords are required): a failed login.
        if (!answer.refusal.empty()) {
            Decision refused{Outcome::BadPassword, binding.instance, answer.refusal};
            refused.appPasswordId = answer.appPasswordId;
            refused.refused = true;
            return refused;
        }
        // Dovecot's allow_nets (a migrated passwd-file keeps it in the line's extra fields):
        // the account logs in only from those networks; lost, a restriction would fail open.
        // allow_real_nets is the same check against the real client address, which is the one
        // Postern has (a PROXY header's); both must pass when both are there. Dovecot's `fail`
        // field fails the login outright.
        bool ipBound = false;
        auto refuse = [&](std::string why) {
            Decision refused{Outcome::BadPassword, binding.instance, std::move(why)};
            refused.appPasswordId = answer.appPasswordId;
            refused.refused = true;
            return refused;
        };
        if (answer.record.extra.count("fail")) return refuse("the account's fail field is set");
        for (const char* field : {"allow_nets", "allow_real_nets"}) {
            auto nets = answer.record.extra.find(field);
            if (nets == answer.record.extra.end()) continue;
            if (!allowedFrom(nets->second, clientIp))
                return refuse(std::string(field) + ": " + clientIp + " is not in " + nets->second);
            ipBound = true;
        }
        ok.appPasswordIpBound = ok.appPasswordIpBound || ipBound;  // cached for this address only
        if (!answer.appPasswordId.empty()) {
            touchAppPassword(binding, askedAs, clientIp, answer);
        }

        core::AuthIdentity& id = result.identity;
        id.user = core::asciiLower(answer.record.user.empty() ? askedAs : answer.record.user);
        id.senderAddresses.clear();
        for (const auto& s : answer.record.senderAddresses) {
            if (!s.empty()) {
                pushUnique(id.senderAddresses, core::normalizeAddressDomain(core::asciiLower(s)));
            }
        }
        if (id.senderAddresses.empty()) {
            id.senderAddresses.push_back(core::normalizeAddressDomain(id.user));
        }
        id.mailbox = answer.record.mailbox.empty() ? defaultMailbox(id.user) : answer.record.mailbox;
        // The same mailbox as at RCPT ("d/alice/" is "d/alice"); a bad one stays as given and
        // the store refuses it.
        if (auto location = core::normalizeMailboxLocation(id.mailbox)) id.mailbox = std::move(*location);
        id.attributes = answer.record.extra;  // e.g. per-user rate limits
        // An app password not valid for SMTP must not send through a POP-before-SMTP grant
        // either (review finding); a backend that does not say its scopes gives none.
        id.relayGrant = true;
        if (!answer.appPasswordId.empty()) {
            auto scopes = answer.record.extra.find(api::apppw::ScopesAttribute);
            id.relayGrant = scopes != answer.record.extra.end() &&
                            (api::apppw::parseScopes(scopes->second) & api::apppw::ScopeSmtp) != 0;
        }
        if (rehasher_ && binding.rehashOnLogin) {
            if (auto from = rehashFrom(RehashCandidate{true, &answer, request.password.size()}, rehasher_->target())) {
                rehash = RehashDue{binding.backend, answer.record.user.empty() ? askedAs : answer.record.user,
                                   answer.record.passwordHash, std::move(*from), answer.verified};
            }
        }
        return ok;
    }

    if (!onlyVerifying) verify(request.password, dummy());
    return {Outcome::UnknownUser, "-", {}};
}

VerifyResult AuthFacade::verify(std::string_view password, std::string_view stored) {
    HashGate::Slot slot(hashGate_);
    return verifyPassword(password, stored);
}

void AuthFacade::touchAppPassword(const BackendBinding& binding, const std::string& login,
                                  const std::string& clientIp, const api::AuthAnswer& answer) {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch());
    const auto last = std::chrono::milliseconds(std::chrono::seconds(answer.appPasswordLastUsed));
    // Only a material change is a write: a new IP, or the recorded use older than the interval.
    if (answer.appPasswordLastUsed != 0 && sameAddress(answer.appPasswordLastIp, clientIp) && now - last < lastUsedInterval_) {
        return;
    }
    api::WriteAnswer w;
    try {
        w = binding.backend->touchAppPassword(login, answer.appPasswordId, clientIp);
    } catch (...) {
        w = {api::WriteStatus::Failed, "backend threw"};
    }
    if (w.status != api::WriteStatus::Ok && w.status != api::WriteStatus::Unsupported) {
        // The login stands; only the bookkeeping failed.
        logger().warning(core::EventLine("auth.app_password_touch_failed")
                             .add("user", login)
                             .add("backend", binding.instance)
                             .add("app_password", answer.appPasswordId)
                             .text("detail", w.detail)
                             .str());
    }
}

core::Answer AuthFacade::isLocalDomain(const std::string& domainIn) {
    std::string domain = core::asciiLower(domainIn);
    while (!domain.empty() && domain.back() == '.') {
        domain.pop_back();
    }
    domain = asciiDomain(domain);
    const auto unicode = core::domainToUnicode(domain);
    if (domain.empty()) {
        return core::Answer::No;
    }
    bool tempFail = false;
    for (const auto& binding : chain_) {
        if (!isAuthoritative(binding, domain)) {
            continue;
        }
        api::Status status = api::Status::TempFail;
        try {
            status = binding.backend->hasDomain(domain);
            if (status == api::Status::NotFound && unicode) {
                status = binding.backend->hasDomain(*unicode);  // stored as U-labels
            }
        } catch (...) {
            status = api::Status::TempFail;
        }
        if (status == api::Status::Ok) {
            return core::Answer::Yes;
        }
        if (status != api::Status::NotFound && status != api::Status::UnknownUser) {
            logger().warning(
                core::EventLine("auth.domain_tempfail").add("domain", domain).add("backend", binding.instance).str());
            tempFail = true;
        }
    }
    return tempFail ? core::Answer::TempFail : core::Answer::No;
}

AuthFacade::LookupResult AuthFacade::askLookup(const std::string& address) {
    const std::string domain = domainOf(address);
    LookupResult r;
    r.status = api::Status::NotFound;
    for (const auto& binding : chain_) {
        if (!isAuthoritative(binding, domain)) {
            continue;
        }
        r.backend = binding.instance;
        r.address = address;
        try {
            r.answer = binding.backend->lookup(address);
            if (r.answer.status == api::Status::NotFound || r.answer.status == api::Status::UnknownUser) {
                // The backend may hold the U-label spelling of the domain.
                if (const std::string other = unicodeSpelling(address); !other.empty()) {
                    r.answer = binding.backend->lookup(other);
                    r.address = other;
                }
            }
        } catch (...) {
            r.answer = {};
            r.answer.detail = "backend threw";
        }
        switch (r.answer.status) {
        case api::Status::NotFound:
        case api::Status::UnknownUser:
            continue;
        case api::Status::Ok:
        case api::Status::Disabled:
            r.status = r.answer.status;
            return r;
        default:  // TempFail, or an answer lookup() may not give: fail closed
            r.status = api::Status::TempFail;
            return r;
        }
    }
    r.backend.clear();
    return r;
}

core::Answer AuthFacade::resolve(const std::string& address, int depth, Expansion& x) {
    if (!x.visited.insert(address).second) {
        logger().notice(core::EventLine("alias.loop").add("rcpt", x.top).add("address", address).str());
        return core::Answer::No;
    }
    if (depth > MaxAliasDepth) {
        logger().error(core::EventLine("alias.too_deep")
                           .add("rcpt", x.top)
                           .add("address", address)
                           .add("max_depth", MaxAliasDepth)
                           .str());
        return core::Answer::TempFail;
    }
    if (depth > 0) {
        const std::string domain = domainOf(address);
        auto known = x.domains.find(domain);
        const core::Answer local = known != x.domains.end() ? known->second : isLocalDomain(domain);
        x.domains.emplace(domain, local);
        switch (local) {
        case core::Answer::TempFail:
            return core::Answer::TempFail;
        case core::Answer::No:
            pushUnique(x.forwards, address);
            return core::Answer::Yes;
        case core::Answer::Yes:
            break;
        }
    }

    LookupResult r = askLookup(address);
    if (r.status == api::Status::TempFail) {
        logger().warning(core::EventLine("rcpt.tempfail")
                             .add("rcpt", x.top)
                             .add("address", address)
                             .add("backend", r.backend)
                             .text("detail", r.answer.detail)
                             .str());
        return core::Answer::TempFail;
    }
    if (r.status != api::Status::Ok) {
        if (depth > 0) {
            logger().notice(core::EventLine("alias.dead_end")
                                .add("rcpt", x.top)
                                .add("address", address)
                                .add("reason", r.status == api::Status::Disabled ? "disabled" : "unknown")
                                .str());
        }
        return core::Answer::No;
    }

    x.domains.emplace(domainOf(address), core::Answer::Yes);
    bool deliverable = false;
    if (r.answer.isMailbox) {
        const std::string user = core::asciiLower(r.answer.record.user.empty() ? r.address : r.answer.record.user);
        const std::string& given = r.answer.record.mailbox.empty() ? defaultMailbox(user) : r.answer.record.mailbox;
        // A location the store would refuse (an absolute path, "..") defers this recipient
        // here, at RCPT: found only at the end of DATA it deferred the whole message for
        // every recipient. "d/alice/" and "d/alice" are one mailbox (one copy).
        const auto location = core::normalizeMailboxLocation(given);
        if (!location) {
            logger().error(core::EventLine("rcpt.bad_mailbox")
                               .add("rcpt", x.top)
                               .add("address", address)
                               .add("backend", r.backend)
                               .text("mailbox", given)
                               .text("detail", "not a path relative to server.mail_root (no leading '/', no "
                                               "empty, '.' or '..' part, no control character)")
                               .str());
            return core::Answer::TempFail;
        }
        pushUnique(x.mailboxes, *location);
        if (auto quota = quotaOf(r.answer.record, x.top, address, r.backend)) {
            auto [it, fresh] = x.quotas.emplace(*location, *quota);
            if (!fresh) it->second = std::min(it->second, *quota);
        }
        deliverable = true;
    }
    const std::string aliasDomain = domainOf(address);
    for (const auto& rawDest : r.answer.aliasDestinations) {
        std::string dest = core::asciiLower(rawDest);
        dest.erase(0, dest.find_first_not_of(" \t"));
        dest.erase(dest.find_last_not_of(" \t") + 1);
        if (dest.empty()) {
            continue;
        }
        dest = core::normalizeAddressDomain(dest);
        // A bare local part means "in the alias's own domain".
        if (dest.find('@') == std::string::npos) {
            dest += "@" + aliasDomain;
        }
        switch (resolve(dest, depth + 1, x)) {
        case core::Answer::TempFail:
            return core::Answer::TempFail;
        case core::Answer::Yes:
            deliverable = true;
            break;
        case core::Answer::No:
            break;
        }
    }
    return deliverable ? core::Answer::Yes : core::Answer::No;
}

core::RecipientLookup AuthFacade::lookupRecipient(const std::string& addressIn) {
    core::RecipientLookup out;  // TempFail until resolved
    const std::string address = core::normalizeAddressDomain(core::asciiLower(addressIn));
    if (address.empty() || address.size() > MaxLoginLength || hasControlChars(address)) {
        out.answer = core::Answer::No;
        return out;
    }
    Expansion x;
    x.top = address;
    core::Answer answer = core::Answer::TempFail;
    try {
        answer = resolve(address, 0, x);
    } catch (const std::exception& e) {
        logger().error(core::EventLine("rcpt.tempfail").add("rcpt", address).text("detail", e.what()).str());
        answer = core::Answer::TempFail;
    }
    out.answer = answer;
    if (answer == core::Answer::Yes) {
        out.mailboxes = std::move(x.mailboxes);
        out.forwards = std::move(x.forwards);
        out.quotas = std::move(x.quotas);
    }
    return out;
}

}  // namespace postern::auth
