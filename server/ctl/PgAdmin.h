// posternctl's PostgreSQL side: users, aliases and domains in the default schema
// (schema/postgres), over one pg::Connection with bound parameters.
#pragma once

#include "UserStore.h"
#include "config/ServerConfig.h"
#include "pg/Connection.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace postern::ctl {

// Works on the tables of schema/postgres; custom *_query settings of the backend are for
// reading and do not change what is written here. Not thread-safe (one command at a time).
class PgAdmin final : public UserStore {
public:
    // Connects with the backend's conninfo, password_file and timeouts.
    // Throws CtlError(ExitConfig) on bad settings, CtlError(ExitTempFail) if it cannot connect.
    explicit PgAdmin(const config::BackendConfig& backend);

    std::string describe() const override;
    void checkCanAdd(const std::string& address) override;
    void add(const NewUser& user) override;
    void requireUser(const std::string& address) override;
    void setPassword(const std::string& address, const std::string& hash) override;
    void setEnabled(const std::string& address, bool enabled) override;
    void remove(const std::string& address) override;
    std::vector<UserInfo> list(const std::string& domain) override;
    UserInfo show(const std::string& address) override;

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
pg::ConnectionPtr openAdminConnection(const config::BackendConfig& backend);

}  // namespace postern::ctl
