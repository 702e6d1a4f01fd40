// What posternctl's user commands need from a user directory; PostgreSQL (PgAdmin) and the
// passwd-file (PasswdFileUserStore) each implement it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace postern::ctl {

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
    std::vector<std::string> aliases;    // aliases delivering to this user (PostgreSQL only)
    std::string created;
    std::string updated;
};

// Every method throws CtlError with the exit code: ExitNoUser (no such user), ExitNoHost
// (unknown domain), ExitCantCreate (exists), ExitDataError (refused by a constraint),
// ExitTempFail (database unreachable), ExitIoError (file).
class UserStore {
public:
    virtual ~UserStore() = default;
    virtual std::string describe() const = 0;  // "postgres backend 'pg'"
    // Checked before asking for a password: the domain exists and the user does not.
    virtual void checkCanAdd(const std::string& address) = 0;
    virtual void add(const NewUser& user) = 0;
    virtual void requireUser(const std::string& address) = 0;
    virtual void setPassword(const std::string& address, const std::string& hash) = 0;
    virtual void setEnabled(const std::string& address, bool enabled) = 0;
    virtual void remove(const std::string& address) = 0;
    virtual std::vector<UserInfo> list(const std::string& domain) = 0;  // "" = all
    virtual UserInfo show(const std::string& address) = 0;
};

using UserStorePtr = std::unique_ptr<UserStore>;

// "{SHA512-CRYPT}$6$..." -> "SHA512-CRYPT"; "$2y$..." -> "CRYPT"; otherwise "?".
std::string schemeOf(const std::string& hash);

}  // namespace postern::ctl
