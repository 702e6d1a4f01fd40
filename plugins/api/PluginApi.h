// The C++ view of an authentication backend, compiled into BOTH sides but never crossing the
// binary boundary: plugins implement api::Backend and expose it through the C table of
// postern_plugin.h (PluginAdapter.h does that); the host wraps the C table back into an
// api::Backend (server/auth/PluginBackend.h). Each side has its own copy of these types, so
// the compiler and standard library of a plugin need not match posternd's.
#pragma once

#include "api/postern_plugin.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace postern::plugins::api {

// The ABI version of the C boundary (postern_plugin.h), not of these C++ types.
inline constexpr std::uint32_t AbiVersion = POSTERN_PLUGIN_ABI_VERSION;

// Every answer keeps its causes apart (Dovecot's passdb results). TempFail means
// "cannot answer now" (backend down, timeout, ambiguous data): the host turns it
// into SMTP 454/451 or POP3 [SYS/TEMP], never into "wrong password" or success.
enum class Status : std::uint8_t {
    Ok,              // user found (and, if verified == true, password checked)
    BadCredentials,  // backend verified the password itself and it was wrong
    UnknownUser,     // no such user
    Disabled,        // account exists but may not log in / receive
    NotFound,        // lookup(): address is not known to this backend
    TempFail,        // backend cannot answer now
};

// What a backend knows about one account.
struct UserRecord {
    std::string user;                           // canonical login, e.g. "alice@example.test"
    std::string passwordHash;                   // "{SCHEME}hash"; empty if verified by backend
    std::vector<std::string> senderAddresses;   // MAIL FROM addresses the user may use
    std::string mailbox;                        // mailbox location relative to mail root ("" = default)
    std::map<std::string, std::string> extra;   // backend-specific attributes (quota, limits)
};

// record.extra key a backend sets when the stored hash (or the disabled flag) it returns was
// read from a replica that may lag behind a change; its value is that lag bound in
// milliseconds. The host then keeps a mismatch in its negative cache no longer than that (the
// next try on a caught-up replica must not be refused by it). Hosts ignore a passwd-file's
// fields of this name (PasswdFile drops "postern."-prefixed extra fields).
inline constexpr const char* ReplicaReadAttribute = "postern.replica_read";

struct AuthAnswer {
    Status status = Status::TempFail;  // fail closed: only an explicit path sets Ok
    bool verified = false;             // true: the backend checked the password (e.g. LDAP bind)
    UserRecord record;
    std::string detail;                // for the log only, never shown to clients

    // App passwords (ABI 4; see postern_auth_answer). refusal: the backend refuses this login
    // even if the password matches (the host verifies it anyway, then fails it).
    std::string refusal;
    std::string appPasswordId;         // non-empty: record.passwordHash is this app password's hash
    std::int64_t appPasswordExpires = 0;
    bool appPasswordIpBound = false;
    std::int64_t appPasswordLastUsed = 0;
    std::string appPasswordLastIp;
    // Rehash on login (ABI 4): the stored hash's scheme when the backend verified itself
    // ("" = unknown). A login with an app password (appPasswordId set) is never rehashed.
    std::string storedScheme;
};

struct LookupAnswer {
    Status status = Status::TempFail;
    // Ok: the address is a local mailbox (record.user set) and/or an alias whose
    // destinations are listed (addresses; the host resolves them again, bounded depth).
    UserRecord record;
    bool isMailbox = false;
    std::vector<std::string> aliasDestinations;
    std::string detail;
};

// probe(): can this backend answer a real query right now? Ok or TempFail (nothing else).
struct ProbeAnswer {
    Status status = Status::TempFail;  // fail closed
    std::string detail;                // why not (for /readyz and the log); never a secret
};

// Outcome of a write or an administration call.
enum class WriteStatus : std::uint8_t {
    Ok,
    UnknownUser,    // no such user
    UnknownDomain,  // add: the store has no such domain
    Exists,         // add: the user exists already
    Invalid,        // a value the store refuses
    Unsupported,    // this backend cannot do that (read-only, or an option it has no place for)
    TempFail,       // store unreachable or too slow
    IoError,        // a file could not be read or written
    ConfigError,    // the store is not set up for this (e.g. schema missing)
    Failed,         // anything else
    Changed,        // replacePassword: the stored hash is not the one to replace (nothing written)
};

struct WriteAnswer {
    WriteStatus status = WriteStatus::Failed;
    std::string detail;  // one line for the operator; never a password or hash
};

struct NewUser {
    std::string address;                 // checked, lower-cased
    std::string passwordHash;            // "{SCHEME}hash"
    bool enabled = true;
    std::string mailbox;                 // "" = default
    std::uint64_t quotaBytes = 0;        // 0 = none
    std::vector<std::string> senders;    // extra MAIL FROM addresses
};

struct UserInfo {
    std::string address;
    bool enabled = true;
    std::string scheme;                  // "SHA512-CRYPT" (never the hash)
    std::string mailbox;                 // as stored ("" = default)
    std::uint64_t quotaBytes = 0;
    std::vector<std::string> senders;
    std::vector<std::string> aliases;    // aliases delivering to this user (if known)
    std::string created;
    std::string updated;
};

// One app password as posternctl lists it (never the hash).
struct AppPasswordInfo {
    std::string id;
    std::string label;
    std::string scopes;          // "smtp", "pop3", "smtp,pop3"
    std::int64_t expires = 0;    // unix seconds; 0 = never
    std::string networks;        // comma-separated; "" = any
    std::int64_t created = 0;
    std::int64_t lastUsed = 0;   // 0 = never / not recorded
    std::string lastIp;
    std::int64_t revoked = 0;    // 0 = live
};

struct NewAppPassword {
    std::string user;
    std::string id;
    std::string label;
    std::string passwordHash;    // of the whole "<id>-<secret>"
    std::string scopes;
    std::int64_t expires = 0;
    std::string networks;
    std::int64_t created = 0;
};

// "{SHA512-CRYPT}$6$..." -> "SHA512-CRYPT"; "$2y$..." -> "CRYPT"; otherwise "?".
inline std::string schemeOfHash(const std::string& hash) {
    if (!hash.empty() && hash[0] == '{') {
        auto close = hash.find('}');
        if (close != std::string::npos) {
            return hash.substr(1, close - 1);
        }
    }
    return !hash.empty() && hash[0] == '$' ? "CRYPT" : "?";
}

// One configured backend instance. Methods are called concurrently from many
// session threads: implementations must be thread-safe. They must not throw
// (the host still catches and maps a throw to TempFail).
class Backend {
public:
    virtual ~Backend() = default;

    // Returns the stored {SCHEME}hash for the host to verify (verified = false), or
    // verifies the password itself (verified = true, e.g. LDAP bind). service: "smtp",
    // "pop3"; for rehash on login "rehash_check" (its first check) and "rehash" (the check
    // right before a write without compare-and-set: a backend with read replicas must answer
    // that one from its primary).
    virtual AuthAnswer authenticate(const std::string& user, const std::string& password,
                                    const std::string& service, const std::string& clientIp) noexcept = 0;

    // RCPT validation: is this address a mailbox or alias of ours?
    virtual LookupAnswer lookup(const std::string& address) noexcept = 0;

    // Is this domain served by this backend? Ok = yes, NotFound = no, TempFail.
    virtual Status hasDomain(const std::string& domain) noexcept = 0;

    // Readiness: Ok if the backend can answer a real query now (it asks its store: a bind
    // or search on a live directory connection, a query through the database pool, the
    // file readable), TempFail + detail if not. Answers from configuration alone do not
    // count. Bounded by the backend's own timeouts; the host calls it at most about once
    // a second (it caches the answer), never on a session's path.
    virtual ProbeAnswer probe() noexcept = 0;

    // Writes. A backend that cannot write keeps these defaults: Unsupported.
    // Replaces the stored hash (posternctl user passwd; rehash after a login with an old
    // scheme). May be called concurrently with the reads.
    virtual WriteAnswer setPassword(const std::string& user, const std::string& newHash) noexcept {
        (void)user, (void)newHash;
        return unsupported();
    }
    // Rehash on login's write: replaces the stored hash with newHash only if it is still
    // oldHash (as authenticate reported it), atomically; Changed if another hash is stored.
    // Unsupported (the default): the host checks again and calls setPassword.
    virtual WriteAnswer replacePassword(const std::string& user, const std::string& oldHash,
                                        const std::string& newHash) noexcept {
        (void)user, (void)oldHash, (void)newHash;
        return unsupported();
    }
    // User administration (posternctl, one call at a time).
    // Could addUser succeed? Ok, Exists, UnknownDomain (asked before the password prompt).
    virtual WriteAnswer checkNewUser(const std::string& address) noexcept {
        (void)address;
        return unsupported();
    }
    virtual WriteAnswer addUser(const NewUser& user) noexcept {
        (void)user;
        return unsupported();
    }
    virtual WriteAnswer setEnabled(const std::string& user, bool enabled) noexcept {
        (void)user, (void)enabled;
        return unsupported();
    }
    virtual WriteAnswer removeUser(const std::string& user) noexcept {
        (void)user;
        return unsupported();
    }
    // domain "" = all; sorted by address.
    virtual WriteAnswer listUsers(const std::string& domain, std::vector<UserInfo>& out) noexcept {
        (void)domain, (void)out;
        return unsupported();
    }
    virtual WriteAnswer showUser(const std::string& address, UserInfo& out) noexcept {
        (void)address, (void)out;
        return unsupported();
    }

    // App passwords (ABI 4). Administration from posternctl; touchAppPassword from posternd
    // after a login (concurrently with the reads).
    virtual WriteAnswer addAppPassword(const NewAppPassword& app) noexcept {
        (void)app;
        return unsupportedAppPasswords();
    }
    virtual WriteAnswer listAppPasswords(const std::string& user, bool& requireAppPassword,
                                         std::vector<AppPasswordInfo>& out) noexcept {
        (void)user, (void)requireAppPassword, (void)out;
        return unsupportedAppPasswords();
    }
    // UnknownUser also for an id the user has no live app password with.
    virtual WriteAnswer revokeAppPassword(const std::string& user, const std::string& id) noexcept {
        (void)user, (void)id;
        return unsupportedAppPasswords();
    }
    virtual WriteAnswer setRequireAppPassword(const std::string& user, bool on) noexcept {
        (void)user, (void)on;
        return unsupportedAppPasswords();
    }
    virtual WriteAnswer touchAppPassword(const std::string& user, const std::string& id,
                                         const std::string& clientIp) noexcept {
        (void)user, (void)id, (void)clientIp;
        return unsupportedAppPasswords();
    }

protected:
    static WriteAnswer unsupportedAppPasswords() {
        return {WriteStatus::Unsupported, "this backend has no app passwords"};
    }
    static WriteAnswer unsupported() {
        return {WriteStatus::Unsupported, "this backend is read-only"};
    }
};

}  // namespace postern::plugins::api
