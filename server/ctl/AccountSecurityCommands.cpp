// posternctl user release|logins (see AccountSecurityCommands.h).
#include "AccountSecurityCommands.h"

#include "CtlSupport.h"
#include "PgAdmin.h"

#include "abuse/AccountSecurityStateFile.h"

#include <Poco/File.h>
#include <Poco/FileStream.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <ostream>

namespace postern::ctl {

namespace {

constexpr const char* IsoUtc = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

std::string checkUser(const std::string& user) {
    if (user.empty() || user.size() > 320 || user[0] == '.' ||
        std::any_of(user.begin(), user.end(), [](unsigned char ch) { return ch <= 0x20 || ch == 0x7f || ch == '/'; }))
        throw CtlError(ExitDataError, "USER must be 1..320 characters without spaces, '/' or control characters");
    return user;
}

pg::QueryResult run(pg::Connection& c, const std::string& sql, const pg::Params& params, const std::string& what) {
    pg::QueryResult r = c.execParams(sql, params);
    if (!r.failed()) return r;
    if (r.sqlState == "42P01")
        throw CtlError(ExitConfig, what + ": the account security tables are missing (run 'posternctl db migrate' first)");
    if (c.isBroken(r) || r.sqlState == "57014") throw CtlError(ExitTempFail, what + ": " + r.error);
    throw CtlError(ExitSoftware, what + ": " + r.error + " (SQLSTATE " + r.sqlState + ")");
}

// A single node's login log, from the state file posternd writes (at most every
// account_security.state_write_interval; newest first).
std::vector<pg::Row> localLogins(const config::ServerConfig& cfg, const std::string& user, long long limit) {
    const std::string path = cfg.queueDir + "/" + abuse::AccountSecurityStateName;
    abuse::StateFileLoad loaded;
    try {
        loaded = abuse::loadAccountSecurityState(path);
    } catch (const std::exception& e) {
        throw CtlError(ExitIoError, e.what());
    }
    if (loaded.status == abuse::StateFileLoad::Status::Corrupt)
        throw CtlError(ExitDataError, path + " is damaged: " + loaded.error);
    std::vector<pg::Row> rows;
    auto it = loaded.state.accounts.find(user);
    if (it == loaded.state.accounts.end()) return rows;  // also: no file yet (nothing flushed)
    const auto& log = it->second.logins;
    for (auto r = log.rbegin(); r != log.rend() && static_cast<long long>(rows.size()) < limit; ++r) {
        const std::time_t t = std::chrono::system_clock::to_time_t(r->at);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char when[32];
        std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        rows.push_back({std::string(when), r->ip, r->protocol, r->mechanism, r->tls, r->result});
    }
    return rows;
}

pg::ConnectionPtr clusterConnection(const config::ServerConfig& cfg) {
    return openAdminConnection(clusterDatabase(cfg, "the shared account holds and login log"));
}

}  // namespace

int runUserRelease(CommandContext& c) {
    return guarded(c, "user release", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1, UserReleaseCommand);
        const std::string user = checkUser(o.positional[0]);
        config::ServerConfig cfg = loadConfig(o);
        if (!cfg.cluster.enabled()) {
            // A single node: posternd applies this request at its next flush
            // (account_security.flush_interval), writes its state file, then deletes the request.
            const std::string dir = cfg.queueDir + "/account-release";
            try {
                Poco::File(dir).createDirectories();
                Poco::FileOutputStream f(dir + "/" + user);
                f << "release\n";
                f.close();
            } catch (const std::exception& e) {
                throw CtlError(ExitIoError, "cannot write the release request in " + dir + ": " + e.what());
            }
            c.out << "release of " << user << " requested; posternd applies it within "
                  << cfg.accountSecurity.flushInterval.count() << "ms\n";
            return static_cast<int>(ExitOk);
        }
        pg::ConnectionPtr db = clusterConnection(cfg);
        // The daemon's release statement: flag and counters in one go, so the next flush of
        // any node does not flag the account again from the same logins.
        pg::QueryResult r = run(*db,
                                "WITH f AS (DELETE FROM account_flags WHERE account = $1 RETURNING reason),"
                                " i AS (DELETE FROM account_security_ips WHERE account = $1 RETURNING 1),"
                                " n AS (DELETE FROM account_security_counts WHERE account = $1 RETURNING 1)"
                                " SELECT (SELECT reason FROM f LIMIT 1)",
                                {user}, "release");
        const bool wasHeld = !r.rows.empty() && !r.rows[0].empty() && r.rows[0][0].has_value();
        if (wasHeld)
            c.out << "released " << user << " (was held for " << *r.rows[0][0] << "); nodes see it within "
                  << cfg.accountSecurity.flushInterval.count() << "ms, queued mail is sent within "
                  << cfg.delivery.scanInterval.count() << "ms\n";
        else
            c.out << user << " was not held; its counters are reset\n";
        return static_cast<int>(ExitOk);
    });
}

int runUserLogins(CommandContext& c) {
    return guarded(c, "user logins", [&] {
        Options o = parseOptions(c.args, {"--limit"}, {"--json"});
        expectPositional(o, 1, 1, UserLoginsCommand);
        const std::string user = checkUser(o.positional[0]);
        long long limit = 20;
        if (!o.value("--limit").empty()) {
            try {
                std::size_t used = 0;
                limit = std::stoll(o.value("--limit"), &used);
                if (used != o.value("--limit").size()) throw std::invalid_argument("trailing");
            } catch (const std::exception&) {
                limit = -1;
            }
            if (limit < 1 || limit > 100000) throw CtlError(ExitDataError, "--limit must be 1..100000");
        }
        config::ServerConfig cfg = loadConfig(o);
        struct {
            std::vector<pg::Row> rows;
        } r;
        if (!cfg.cluster.enabled()) {
            // A single node: the state file in the queue directory (up to one flush interval old).
            r.rows = localLogins(cfg, user, limit);
        } else {
            pg::ConnectionPtr db = clusterConnection(cfg);
            r.rows = run(*db,
                         std::string("SELECT to_char(at AT TIME ZONE 'UTC', ") + IsoUtc +
                             "), host(ip), protocol, mechanism, tls, result FROM account_logins"
                             " WHERE account = $1 ORDER BY at DESC, id DESC LIMIT $2::bigint",
                         {user, std::to_string(limit)}, "list logins")
                         .rows;
        }
        if (o.has("--json")) {
            static const char* const names[] = {"time", "ip", "protocol", "mechanism", "tls", "result"};
            Poco::JSON::Array::Ptr out = new Poco::JSON::Array;
            for (const auto& row : r.rows) {
                auto j = jsonObject();
                for (std::size_t i = 0; i < row.size() && i < 6; ++i) {
                    if (i == 4) {
                        const std::string tls = row[i].value_or("");
                        j->set("tls", !tls.empty());
                        j->set("tls_version", tls.empty() || tls == "yes" ? Poco::Dynamic::Var() : Poco::Dynamic::Var(tls));
                        continue;
                    }
                    j->set(names[i], row[i] ? Poco::Dynamic::Var(*row[i]) : Poco::Dynamic::Var());
                }
                out->add(j);
            }
            writeJson(c.out, out);
            return static_cast<int>(ExitOk);
        }
        for (const auto& row : r.rows) {
            for (std::size_t i = 0; i < row.size(); ++i) {
                std::string v = row[i].value_or("");
                if (i == 4 && v.empty()) v = "no";
                if (v.empty()) v = "-";
                c.out << (i ? "\t" : "") << v;
            }
            c.out << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
