// posternctl's user commands talk to the configured backend through its plugin, exactly as
// posternd loads it: PostgreSQL writes use the backend's configurable *_query keys, a
// passwd-file is edited by the plugin's own format code. This class maps the plugin's
// answers to posternctl's exit codes and messages.
#pragma once

#include "api/PluginApi.h"
#include "auth/PasswordScheme.h"
#include "auth/PluginLoader.h"
#include "config/ServerConfig.h"

#include <memory>
#include <string>
#include <vector>

namespace postern::ctl {

using NewUser = plugins::api::NewUser;
using UserInfo = plugins::api::UserInfo;

// Every method throws CtlError with the exit code: ExitNoUser (no such user), ExitNoHost
// (unknown domain), ExitCantCreate (exists), ExitDataError (refused value), ExitTempFail
// (store unreachable), ExitIoError (file), ExitConfig (the backend cannot administer users,
// e.g. LDAP; schema missing), ExitUsage (an option this backend has no place for, --quota on
// a passwd-file), ExitSoftware (anything else).
class UserStore {
public:
    // Loads the backend's plugin from server.plugin_dir (POSTERN_CREATE_ADMIN).
    // Throws CtlError(ExitConfig) if it cannot be loaded or refuses the configuration.
    UserStore(const config::ServerConfig& cfg, const config::BackendConfig& backend);
    ~UserStore();

    const config::BackendConfig& backend() const { return backend_; }
    std::string describe() const;  // "postgres backend 'pg'"
    // Checked before asking for a password: the domain exists and the user does not.
    void checkCanAdd(const std::string& address);
    void add(const NewUser& user);
    void requireUser(const std::string& address);
    void setPassword(const std::string& address, const std::string& hash);
    void setEnabled(const std::string& address, bool enabled);
    void remove(const std::string& address);
    std::vector<UserInfo> list(const std::string& domain);  // "" = all
    UserInfo show(const std::string& address);

    // The backend itself, for commands kept in their own files (AppPasswordCommands.cpp);
    // check() maps a non-Ok answer to CtlError as above.
    plugins::api::Backend& backendApi() { return *handle_.get(); }
    void check(const plugins::api::WriteAnswer& answer, const std::string& address) const;

private:
    [[noreturn]] void fail(const plugins::api::WriteAnswer& answer, const std::string& address) const;

    config::BackendConfig backend_;
    std::unique_ptr<auth::PluginLoader> loader_;
    auth::BackendHandle handle_;
};

struct Options;  // CtlSupport.h

// The loaded configuration and the user store of the user and app-password commands.
struct UserSession {
    config::ServerConfig config;
    std::unique_ptr<UserStore> store;
};

// The backend's plugin does the work (as posternd loads it). Without --backend: the first
// postgres backend, else the first passwd-file backend; --backend may name any backend (a
// read-only one, such as LDAP, then answers with a clear error). The plugins' own log lines
// stay quiet: what matters comes back as the command's message.
UserSession openUserSession(const Options& options);

// auth.default_scheme as the scheme of new hashes; CtlError(ExitConfig) if it is none.
auth::HashScheme newHashScheme(const config::ServerConfig& cfg);

// "{SHA512-CRYPT}$6$..." -> "SHA512-CRYPT"; "$2y$..." -> "CRYPT"; otherwise "?".
inline std::string schemeOf(const std::string& hash) { return plugins::api::schemeOfHash(hash); }

}  // namespace postern::ctl
