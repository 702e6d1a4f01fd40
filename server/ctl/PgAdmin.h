// posternctl's PostgreSQL side for domains and aliases in the default schema
// (schema/postgres), over one pg::Connection with bound parameters. Users are not here: the
// user commands go through the backend's plugin (UserStore.h) and its configurable queries.
#pragma once

#include "config/ServerConfig.h"
#include "pg/Connection.h"

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace postern::ctl {

// Works on the domains and aliases tables of schema/postgres. Not thread-safe (one command
// at a time).
class PgAdmin final {
public:
    // Connects with the backend's conninfo, password_file and timeouts.
    // Throws CtlError(ExitConfig) on bad settings, CtlError(ExitTempFail) if it cannot connect.
    explicit PgAdmin(const config::BackendConfig& backend);

    std::string describe() const;

    // Domains: add (ExitCantCreate if present), remove (ExitNoHost if absent; refuses a domain
    // that still has users or aliases unless force), list (name, enabled, users, aliases).
    void addDomain(const std::string& domain);
    void removeDomain(const std::string& domain, bool force);
    struct DomainInfo {
        std::string name;
        bool enabled = true;
        long users = 0;
        long aliases = 0;
    };
    std::vector<DomainInfo> listDomains();

    // Aliases: add destinations (the alias's domain must exist: ExitNoHost; a pair already
    // present: ExitCantCreate), remove all or the given destinations (ExitNoUser if nothing
    // matched), list by alias address or domain ("" = all) as (alias, destination) pairs.
    void addAlias(const std::string& alias, const std::vector<std::string>& destinations);
    void removeAlias(const std::string& alias, const std::vector<std::string>& destinations);
    std::vector<std::pair<std::string, std::string>> listAliases(const std::string& filter);

    pg::Connection& connection() { return *connection_; }

private:
    pg::QueryResult run(const std::string& sql, const pg::Params& params, const std::string& what);
    void transaction(const std::function<void()>& body);

    std::string name_;
    pg::ConnectionPtr connection_;
};

// Opens a connection for `db migrate` the same way. Throws CtlError.
// statementTimeout: instead of the backend's statement_timeout (db migrate's --timeout).
pg::ConnectionPtr openAdminConnection(const config::BackendConfig& backend,
                                      std::optional<std::chrono::milliseconds> statementTimeout = std::nullopt);

}  // namespace postern::ctl
