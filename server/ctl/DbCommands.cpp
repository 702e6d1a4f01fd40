// posternctl db migrate: applies the schema/postgres migrations not yet recorded.
#include "DbCommands.h"

#include "CtlSupport.h"
#include "PgAdmin.h"
#include "core/Duration.h"
#include "pg/Migrator.h"

#include <chrono>

#include <ostream>

namespace postern::ctl {

int runDbMigrate(CommandContext& c) {
    return guarded(c, "db migrate", [&] {
        Options o = parseOptions(c.args, {"--schema-dir", "--timeout", "--lock-timeout"}, {});
        expectPositional(o, 0, 0, DbMigrateCommand);
        // A migration may build an index over a big table: the runtime statement_timeout
        // (seconds) would roll it back. Waiting for a lock is bounded separately, so an ALTER
        // never queues the live traffic behind it for long.
        std::chrono::milliseconds timeout{}, lockTimeout{};
        try {
            timeout = core::parseDuration(o.value("--timeout", "10m"));
            lockTimeout = core::parseDuration(o.value("--lock-timeout", "10s"));
        } catch (const std::exception& e) {
            throw CtlError(ExitUsage, std::string("--timeout / --lock-timeout: ") + e.what());
        }
        if (timeout.count() <= 0 || lockTimeout.count() <= 0)
            throw CtlError(ExitUsage, "--timeout and --lock-timeout must be more than 0");
        const std::string dir = o.value("--schema-dir", layout().schemaDir);
        std::vector<pg::Migration> migrations;
        try {
            migrations = pg::Migrator::scan(dir);
        } catch (const std::exception& e) {
            throw CtlError(ExitDataError, e.what());
        }
        if (migrations.empty()) {
            throw CtlError(ExitDataError, "no NNN_name.sql files in " + dir);
        }
        config::ServerConfig cfg = loadConfig(o);
        // The cluster database and every postgres backend's database (each once).
        std::vector<config::BackendConfig> targets;
        if (!o.backend.empty()) {
            targets.push_back(chooseBackend(cfg, o, {"postgres"}));
        } else {
            if (cfg.cluster.enabled()) targets.push_back(clusterDatabase(cfg, "the cluster database"));
            for (const auto& b : cfg.backends) {
                if (b.plugin != "postgres") continue;
                auto it = b.params.find("conninfo");
                bool seen = false;
                for (const auto& t : targets) seen = seen || (it != b.params.end() && t.params.at("conninfo") == it->second);
                if (!seen) targets.push_back(b);
            }
            if (targets.empty()) targets.push_back(chooseBackend(cfg, o, {"postgres"}));  // throws the usual error
        }
        for (const auto& backend : targets) {
            pg::ConnectionPtr conn = openAdminConnection(backend, timeout);
            pg::Migrator migrator(*conn, lockTimeout);
            int applied = 0;
            try {
                applied = migrator.migrate(migrations, c.out);
            } catch (const std::exception& e) {
                throw CtlError(conn->isOk() ? ExitSoftware : ExitTempFail, e.what());
            }
            c.out << (applied == 0 ? "schema up to date" : "applied " + std::to_string(applied) + " migration(s)")
                  << " (" << (backend.name == "cluster" ? std::string("cluster database") : "backend '" + backend.name + "'")
                  << ")\n";
        }
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
