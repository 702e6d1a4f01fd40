// Public ABI between posternd and its authentication backends (postern-auth-<name>.so).
// Only this header and std types cross the boundary: no POCO types, no exceptions.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace postern::plugins::api {

// Bump on any change to the types or virtual functions below. The host reads the
// plugin's exported postern_plugin_abi_version before running any of its code and
// refuses a mismatch with one line naming both versions.
// 2: Backend::probe() (readiness).
inline constexpr std::uint32_t AbiVersion = 2;

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

struct AuthAnswer {
    Status status = Status::TempFail;  // fail closed: only an explicit path sets Ok
    bool verified = false;             // true: the backend checked the password (e.g. LDAP bind)
    UserRecord record;
    std::string detail;                // for the log only, never shown to clients
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

struct PasswordUpdate {
    std::string user;
    std::string newHash;  // "{SCHEME}hash"
};

// One configured backend instance. Methods are called concurrently from many
// session threads: implementations must be thread-safe. They must not throw
// (the host still catches and maps a throw to TempFail).
class Backend {
public:
    virtual ~Backend() = default;

    // Returns the stored {SCHEME}hash for the host to verify (verified = false), or
    // verifies the password itself (verified = true, e.g. LDAP bind).
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
};

// Config: every key under auth.backend.<instance>. with the prefix stripped
// ("path", "scheme", ...). create() returns nullptr and fills error on bad config;
// it must reject keys it does not know.
using CreateFn = Backend* (*)(const std::map<std::string, std::string>& config, std::string& error) noexcept;
using DestroyFn = void (*)(Backend*) noexcept;

struct Descriptor {
    const char* name;     // "passwd-file"
    const char* version;  // plugin's own version string
    CreateFn create;
    DestroyFn destroy;
};

}  // namespace postern::plugins::api

// The two symbols every plugin exports (define them with POSTERN_PLUGIN_EXPORT).
#define POSTERN_PLUGIN_ABI_SYMBOL "postern_plugin_abi_version"
#define POSTERN_PLUGIN_DESCRIPTOR_SYMBOL "postern_plugin_descriptor"

#define POSTERN_PLUGIN_EXPORT(descriptorExpr)                                                      \
    extern "C" __attribute__((visibility("default"))) const std::uint32_t postern_plugin_abi_version = \
        ::postern::plugins::api::AbiVersion;                                                       \
    extern "C" __attribute__((visibility("default"))) const ::postern::plugins::api::Descriptor*   \
    postern_plugin_descriptor() noexcept {                                                         \
        static const ::postern::plugins::api::Descriptor d = descriptorExpr;                       \
        return &d;                                                                                 \
    }
