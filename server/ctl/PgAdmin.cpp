// posternctl's PostgreSQL side: aliases and domains in the default schema.
#include "PgAdmin.h"

#include "CtlSupport.h"
#include "pg/ConnectSettings.h"

#include <functional>

namespace postern::ctl {

namespace {

bool isTrue(const pg::Value& v) {
    return v && (*v == "t" || *v == "true");
}

std::uint64_t toU64(const pg::Value& v) {
    try {
        return v ? std::stoull(*v) : 0;
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace

pg::ConnectionPtr openAdminConnection(const config::BackendConfig& backend,
                                      std::optional<std::chrono::milliseconds> statementTimeout) {
    pg::ConnectSettings settings;
    try {
        settings = pg::ConnectSettings::fromParams(backend.params);
    } catch (const std::exception& e) {
        throw CtlError(ExitConfig, "backend '" + backend.name + "': " + e.what());
    }
    settings.applicationName = "posternctl";
    if (statementTimeout) settings.statementTimeout = *statementTimeout;
    std::string error;
    pg::ConnectionPtr c = pg::Connection::open(settings, error);
    if (!c) {
        throw CtlError(ExitTempFail, "cannot connect to PostgreSQL (backend '" + backend.name + "'): " + error);
    }
    return c;
}

PgAdmin::PgAdmin(const config::BackendConfig& backend)
    : name_(backend.name), connection_(openAdminConnection(backend)) {}

std::string PgAdmin::describe() const {
    return "postgres backend '" + name_ + "'";
}

pg::QueryResult PgAdmin::run(const std::string& sql, const pg::Params& params, const std::string& what) {
    pg::QueryResult r = connection_->execParams(sql, params);
    if (!r.failed()) {
        return r;
    }
    const std::string& s = r.sqlState;
    const std::string msg = what + ": " + r.error;
    if (connection_->isBroken(r) || s == "57014") {
        throw CtlError(ExitTempFail, msg);
    }
    if (r.isUniqueViolation()) {
        throw CtlError(ExitCantCreate, what + ": already exists");
    }
    if (r.isForeignKeyViolation()) {
        throw CtlError(ExitNoHost, what + ": unknown domain");
    }
    if (r.isCheckViolation() || s.rfind("22", 0) == 0 || s.rfind("23", 0) == 0) {
        throw CtlError(ExitDataError, msg);
    }
    if (s == "42P01") {
        throw CtlError(ExitConfig, msg + " (run 'posternctl db migrate' first)");
    }
    throw CtlError(ExitSoftware, msg + " (SQLSTATE " + s + ")");
}

void PgAdmin::transaction(const std::function<void()>& body) {
    run("BEGIN", {}, "begin");
    try {
        body();
        run("COMMIT", {}, "commit");
    } catch (...) {
        connection_->exec("ROLLBACK");
        throw;
    }
}

void PgAdmin::addDomain(const std::string& domain) {
    if (run("SELECT 1 FROM domains WHERE name = $1", {domain}, "domain").ok()) {
        throw CtlError(ExitCantCreate, "domain " + domain + " already exists");
    }
    run("INSERT INTO domains (name) VALUES ($1)", {domain}, "domain " + domain);
}

void PgAdmin::removeDomain(const std::string& domain, bool force) {
    transaction([&] {
        pg::QueryResult r = run(
            "SELECT (SELECT count(*) FROM users WHERE domain = $1), (SELECT count(*) FROM aliases WHERE domain = $1) "
            "FROM domains WHERE name = $1 FOR UPDATE",
            {domain}, "domain");
        if (r.noRows()) {
            throw CtlError(ExitNoHost, "unknown domain " + domain);
        }
        const std::string users = r.rows[0][0].value_or("0");
        const std::string aliases = r.rows[0][1].value_or("0");
        // ON DELETE CASCADE would take every mailbox record with it: make that explicit.
        if (!force && (users != "0" || aliases != "0")) {
            throw CtlError(ExitDataError, "domain " + domain + " still has " + users + " users and " + aliases +
                                              " aliases (delete them, or use --force to delete them too)");
        }
        run("DELETE FROM domains WHERE name = $1", {domain}, "domain " + domain);
    });
}

std::vector<PgAdmin::DomainInfo> PgAdmin::listDomains() {
    pg::QueryResult r = run(
        "SELECT d.name, d.enabled, (SELECT count(*) FROM users u WHERE u.domain = d.name), "
        "(SELECT count(*) FROM aliases a WHERE a.domain = d.name) FROM domains d ORDER BY d.name",
        {}, "domains");
    std::vector<DomainInfo> out;
    for (const auto& row : r.rows) {
        out.push_back({row[0].value_or(""), isTrue(row[1]), static_cast<long>(toU64(row[2])),
                       static_cast<long>(toU64(row[3]))});
    }
    return out;
}

void PgAdmin::addAlias(const std::string& alias, const std::vector<std::string>& destinations) {
    const std::string domain = domainOf(alias);
    if (run("SELECT 1 FROM domains WHERE name = $1", {domain}, "domain").noRows()) {
        throw CtlError(ExitNoHost, "unknown domain " + domain + " (add it with 'posternctl domain add " + domain + "')");
    }
    transaction([&] {
        for (const auto& d : destinations) {
            run("INSERT INTO aliases (address, domain, destination) VALUES ($1, $2, $3)", {alias, domain, d},
                "alias " + alias + " -> " + d);
        }
    });
}

void PgAdmin::removeAlias(const std::string& alias, const std::vector<std::string>& destinations) {
    std::size_t removed = 0;
    transaction([&] {
        if (destinations.empty()) {
            removed = run("DELETE FROM aliases WHERE address = $1", {alias}, "alias " + alias).affectedRows;
        }
        for (const auto& d : destinations) {
            pg::QueryResult r = run("DELETE FROM aliases WHERE address = $1 AND destination = $2", {alias, d},
                                    "alias " + alias + " -> " + d);
            if (r.noRows()) {
                throw CtlError(ExitNoUser, "no alias " + alias + " -> " + d);
            }
            removed += r.affectedRows;
        }
    });
    if (removed == 0) {
        throw CtlError(ExitNoUser, "no such alias " + alias);
    }
}

std::vector<std::pair<std::string, std::string>> PgAdmin::listAliases(const std::string& filter) {
    pg::QueryResult r =
        filter.empty()
            ? run("SELECT address, destination FROM aliases ORDER BY address, destination", {}, "aliases")
        : filter.find('@') != std::string::npos
            ? run("SELECT address, destination FROM aliases WHERE address = $1 ORDER BY destination", {filter},
                  "aliases")
            : run("SELECT address, destination FROM aliases WHERE domain = $1 ORDER BY address, destination",
                  {filter}, "aliases");
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& row : r.rows) {
        out.emplace_back(row[0].value_or(""), row[1].value_or(""));
    }
    return out;
}

}  // namespace postern::ctl
