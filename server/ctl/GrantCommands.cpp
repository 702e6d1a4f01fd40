// posternctl grant ...: the shared POP-before-SMTP grants in PostgreSQL.
#include "GrantCommands.h"

#include "core/Idna.h"
#include "core/Utf8.h"

#include "CtlSupport.h"
#include "PgAdmin.h"
#include "core/Duration.h"
#include "core/Network.h"

#include <algorithm>
#include <vector>
#include <ostream>

namespace postern::ctl {

namespace {

constexpr const char* IsoUtc = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

struct GrantSession {
    config::ServerConfig config;
    pg::ConnectionPtr connection;
};

GrantSession open(const Options& o) {
    GrantSession s{loadConfig(o), nullptr};
    s.connection = openAdminConnection(
        clusterDatabase(s.config, "on a single node POP-before-SMTP grants live in posternd's memory, not in a "
                                  "database: they end within pop_before_smtp.lifetime or at a restart; set "
                                  "cluster.conninfo to share them between nodes and manage them here"));
    return s;
}

pg::QueryResult run(pg::Connection& c, const std::string& sql, const pg::Params& params, const std::string& what) {
    pg::QueryResult r = c.execParams(sql, params);
    if (!r.failed()) {
        return r;
    }
    if (r.sqlState == "42P01") {
        throw CtlError(ExitConfig, what + ": the grants table is missing (run 'posternctl db migrate' first)");
    }
    if (c.isBroken(r) || r.sqlState == "57014") {
        throw CtlError(ExitTempFail, what + ": " + r.error);
    }
    if (r.sqlState.rfind("22", 0) == 0 || r.sqlState.rfind("23", 0) == 0) {
        throw CtlError(ExitDataError, what + ": " + r.error);
    }
    throw CtlError(ExitSoftware, what + ": " + r.error + " (SQLSTATE " + r.sqlState + ")");
}

unsigned prefixOf(const config::ServerConfig& cfg) {
    return cfg.popBeforeSmtp.ipv6Prefix < 0 || cfg.popBeforeSmtp.ipv6Prefix > 128
               ? 128u
               : static_cast<unsigned>(cfg.popBeforeSmtp.ipv6Prefix);
}

std::string keyOf(const std::string& text, const config::ServerConfig& cfg) {
    auto key = core::parseAddressKey(text, prefixOf(cfg));
    if (!key) {
        throw CtlError(ExitDataError, "'" + text + "' is not an IP address or a grant key such as 2001:db8:1:2::/64");
    }
    return *key;
}

// Records a revocation (schema 010) before the grants are deleted, so a grant a node held
// through an outage and writes back later does not come back to life: key "" = every
// address, user "" = every user, "@domain" = the users of a domain. Without the table (a
// schema before 010) there is nothing to record it in: false.
bool recordRevocation(pg::Connection& c, const std::string& key, const std::string& user) {
    pg::QueryResult exists = run(c, "SELECT to_regclass('pop_before_smtp_revocations') IS NOT NULL", {}, "revocations table");
    if (exists.rows.empty() || exists.rows[0].empty() || exists.rows[0][0].value_or("f") != "t") return false;
    run(c,
        "INSERT INTO pop_before_smtp_revocations (key, user_name) VALUES ($1, $2)"
        " ON CONFLICT (key, user_name) DO UPDATE SET revoked = now()",
        {key, user}, "record the revocation");
    return true;
}

}  // namespace

std::optional<std::size_t> revokeUserGrants(pg::Connection& c, GrantOwner owner, const std::string& who) {
    pg::QueryResult exists = run(c, "SELECT to_regclass('pop_before_smtp_grants') IS NOT NULL", {}, "grants table");
    if (exists.rows.empty() || exists.rows[0].empty() || exists.rows[0][0].value_or("f") != "t") {
        return std::nullopt;
    }
    recordRevocation(c, "", owner == GrantOwner::User ? who : "@" + who);
    // A domain's users by suffix, not LIKE: '_' in a domain would be a wildcard.
    pg::QueryResult r = run(c,
                            owner == GrantOwner::User
                                ? "DELETE FROM pop_before_smtp_grants WHERE user_name = $1"
                                : "DELETE FROM pop_before_smtp_grants WHERE right(user_name, length($1) + 1) = '@' || $1",
                            {who}, "revoke grants");
    return r.affectedRows;
}

void revokeGrantsOf(const config::ServerConfig& cfg, GrantOwner owner, const std::string& who, CommandContext& c) {
    if (cfg.popBeforeSmtp.lifetime.count() <= 0) {
        return;  // POP-before-SMTP is off: there are no grants
    }
    const std::string whose = owner == GrantOwner::User ? who : "the users of " + who;
    if (!cfg.cluster.enabled()) {
        c.err << "note: without cluster.conninfo, POP-before-SMTP grants live in posternd's memory; those of "
              << whose << " end within pop_before_smtp.lifetime, or at once when posternd restarts\n";
        return;
    }
    std::optional<std::size_t> n;
    try {
        pg::ConnectionPtr connection = openAdminConnection(clusterDatabase(cfg, "the grants"));
        n = revokeUserGrants(*connection, owner, who);
    } catch (const CtlError& e) {
        throw CtlError(e.code(), std::string(owner == GrantOwner::User ? "the account" : "the domain") +
                                     " was changed, but revoking its POP-before-SMTP grants failed: " + e.what());
    }
    if (n && *n > 0) {
        c.out << "revoked " << *n << " POP-before-SMTP grant(s) of " << whose << "\n";
    }
}

int runGrantList(CommandContext& c) {
    return guarded(c, "grant list", [&] {
        Options o = parseOptions(c.args, {}, {"--all", "--json"});
        expectPositional(o, 0, 0, GrantListCommand);
        GrantSession s = open(o);
        pg::QueryResult r = run(
            *s.connection,
            std::string("SELECT key, user_name, to_char(expires AT TIME ZONE 'UTC', ") + IsoUtc +
                "), COALESCE(to_char(last_used AT TIME ZONE 'UTC', " + IsoUtc + "), '-'),"
                " CASE WHEN expires > now() THEN 'live' ELSE 'expired' END"
                " FROM pop_before_smtp_grants WHERE $1::boolean OR expires > now() ORDER BY key, user_name",
            {o.has("--all") ? "true" : "false"}, "list grants");
        if (o.has("--json")) {
            static const char* const names[] = {"key", "user", "expires", "last_used", "state"};
            Poco::JSON::Array::Ptr out = new Poco::JSON::Array;
            for (const auto& row : r.rows) {
                auto j = jsonObject();
                for (std::size_t i = 0; i < row.size() && i < 5; ++i) {
                    const bool none = !row[i] || (i == 3 && *row[i] == "-");
                    j->set(names[i], none ? Poco::Dynamic::Var() : Poco::Dynamic::Var(*row[i]));
                }
                out->add(j);
            }
            writeJson(c.out, out);
            return static_cast<int>(ExitOk);
        }
        for (const auto& row : r.rows) {
            for (std::size_t i = 0; i < row.size(); ++i) {
                c.out << (i ? "\t" : "") << row[i].value_or("-");
            }
            c.out << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

int runGrantAdd(CommandContext& c) {
    return guarded(c, "grant add", [&] {
        Options o = parseOptions(c.args, {"--lifetime"}, {});
        expectPositional(o, 2, 2, GrantAddCommand);
        // Lower-cased as the daemon stores a login's grant: the account hold and the sender
        // check compare lower-case names (review finding: "Bob@X" slipped past the hold).
        const std::string user = core::asciiLower(core::normalizeAddressDomain(o.positional[1]));
        if (user.empty() || user.size() > 320 ||
            std::any_of(user.begin(), user.end(), [](unsigned char ch) { return ch <= 0x20 || ch == 0x7f; })) {
            throw CtlError(ExitDataError, "USER must be 1..320 characters without spaces or control characters");
        }
        GrantSession s = open(o);
        const std::string key = keyOf(o.positional[0], s.config);
        long long ms = s.config.popBeforeSmtp.lifetime.count() > 0 ? s.config.popBeforeSmtp.lifetime.count() : 600'000;
        if (!o.value("--lifetime").empty()) {
            try {
                ms = core::parseDuration(o.value("--lifetime")).count();
            } catch (const std::exception& e) {
                throw CtlError(ExitDataError, std::string("--lifetime: ") + e.what());
            }
        }
        // At most ten years: a longer one is a typo, and (ms + 999) would overflow near the
        // largest duration parseDuration takes.
        constexpr long long TenYears = 10LL * 366 * 24 * 3600 * 1000;
        if (ms < 1000 || ms > TenYears) {
            throw CtlError(ExitDataError, "--lifetime must be at least 1s and at most 3660d");
        }
        const long long secs = (ms + 999) / 1000;
        // The daemon's upsert: the user's grant for the key is replaced (lifetime); other
        // users' grants for the key (a shared NAT address) stay.
        pg::QueryResult r = run(
            *s.connection,
            std::string("INSERT INTO pop_before_smtp_grants AS g (key, user_name, created, expires, last_used)"
                        " VALUES ($1, $2, now(), now() + $3::bigint * interval '1 second', NULL)"
                        " ON CONFLICT (key, user_name) DO UPDATE SET created = EXCLUDED.created,"
                        " expires = EXCLUDED.expires, last_used = NULL, senders = EXCLUDED.senders"
                        " RETURNING to_char(g.expires AT TIME ZONE 'UTC', ") + IsoUtc + ")",
            {key, user, std::to_string(secs)}, "add grant");
        c.out << "granted " << key << " to " << user << " until "
              << (r.rows.empty() ? std::string("?") : r.rows[0][0].value_or("?")) << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runGrantRevoke(CommandContext& c) {
    return guarded(c, "grant revoke", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1, GrantRevokeCommand);
        GrantSession s = open(o);
        const std::string key = keyOf(o.positional[0], s.config);
        // Every user's grant for the address (several subscribers may share it).
        const bool recorded = recordRevocation(*s.connection, key, "");
        pg::QueryResult r = run(*s.connection,
                                "DELETE FROM pop_before_smtp_grants WHERE key = $1 RETURNING user_name",
                                {key}, "revoke grant");
        if (r.rows.empty()) {
            throw CtlError(ExitNoUser, "no grant for " + key +
                                           (recorded ? " (the revocation is recorded: a grant a node holds for it"
                                                       " through a database outage will not be written back)"
                                                     : ""));
        }
        std::vector<std::string> names;
        for (const auto& row : r.rows) names.push_back(row[0].value_or("?"));
        std::sort(names.begin(), names.end());
        std::string users;
        for (const auto& name : names) users += (users.empty() ? "" : ", ") + name;
        c.out << "revoked " << key << " (user" << (r.rows.size() > 1 ? "s " : " ") << users << ")\n";
        return static_cast<int>(ExitOk);
    });
}

int runGrantFlush(CommandContext& c) {
    return guarded(c, "grant flush", [&] {
        Options o = parseOptions(c.args, {}, {"--expired"});
        expectPositional(o, 0, 0, GrantFlushCommand);
        GrantSession s = open(o);
        if (!o.has("--expired")) recordRevocation(*s.connection, "", "");
        pg::QueryResult r = run(*s.connection,
                                "DELETE FROM pop_before_smtp_grants WHERE NOT $1::boolean OR expires <= now()",
                                {o.has("--expired") ? "true" : "false"}, "flush grants");
        c.out << "flushed " << r.affectedRows << (o.has("--expired") ? " expired" : "") << " grant(s)\n";
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
