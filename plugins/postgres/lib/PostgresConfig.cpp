// Configuration of one postgres auth backend.
#include "PostgresConfig.h"

#include "core/Duration.h"

#include <set>
#include <stdexcept>

namespace postern::plugins::postgres {

namespace {

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) {
        return {};
    }
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

const char* const QueryKeys[] = {"password_query",     "user_query",         "alias_query",
                                 "domain_query",       "senders_query",      "add_user_query",
                                 "add_sender_query",   "set_password_query", "replace_password_query", "set_enabled_query",
                                 "delete_user_query",  "domain_exists_query", "list_users_query",
                                 "show_user_query",    "user_aliases_query",
                                 // app passwords
                                 "add_app_password_query", "list_app_passwords_query",
                                 "revoke_app_password_query", "require_app_password_query",
                                 "touch_app_password_query", "read_conninfo", "replica_max_lag"};

}  // namespace

PostgresConfig PostgresConfig::fromMap(const std::map<std::string, std::string>& config) {
    std::set<std::string> known(std::begin(QueryKeys), std::end(QueryKeys));
    for (const char* const* k = pg::ConnectSettings::knownKeys(); *k; ++k) {
        known.insert(*k);
    }
    for (const auto& [key, value] : config) {
        if (known.count(key) == 0) {
            std::string list;
            for (const auto& k : known) {
                list += (list.empty() ? "" : ", ") + k;
            }
            throw std::invalid_argument("unknown config key '" + key + "' (known: " + list + ")");
        }
    }
    PostgresConfig c;
    c.connection = pg::ConnectSettings::fromParams(config);
    if (auto it = config.find("read_conninfo"); it != config.end()) {
        c.readConninfo = trim(it->second);
    }
    if (auto it = config.find("replica_max_lag"); it != config.end()) {
        try {
            c.replicaMaxLag = core::parseDuration(it->second);
        } catch (const std::invalid_argument& e) {
            throw std::invalid_argument(std::string("replica_max_lag: ") + e.what());
        }
    }

    auto query = [&](const char* key, const char* fallback, bool optional, const char* needs = "$1") {
        auto it = config.find(key);
        std::string q = it == config.end() ? std::string(fallback) : trim(it->second);
        if (q.empty()) {
            if (optional) {
                return q;
            }
            throw std::invalid_argument(std::string("config key '") + key + "' must not be empty");
        }
        // The address is always a bound parameter; a query that ignores it answers for
        // everyone (fail closed: refuse it at start-up).
        if (q.find("$1") == std::string::npos) {
            throw std::invalid_argument(std::string("config key '") + key +
                                        "' must use $1 (the address, bound as a parameter)");
        }
        // A write that ignores the value it is asked to store would report success and do nothing.
        if (q.find(needs) == std::string::npos) {
            throw std::invalid_argument(std::string("config key '") + key + "' must use " + needs);
        }
        return q;
    };
    c.passwordQuery = query("password_query", DefaultPasswordQuery, false);
    c.userQuery = query("user_query", DefaultUserQuery, false);
    c.aliasQuery = query("alias_query", DefaultAliasQuery, true);
    c.domainQuery = query("domain_query", DefaultDomainQuery, false);
    c.sendersQuery = query("senders_query", DefaultSendersQuery, true);
    c.addUserQuery = query("add_user_query", DefaultAddUserQuery, false, "$3");
    c.addSenderQuery = query("add_sender_query", DefaultAddSenderQuery, true, "$2");
    c.setPasswordQuery = query("set_password_query", DefaultSetPasswordQuery, false, "$2");
    // The stock compare-and-set fits the stock schema only: with the operator's own
    // password_query or set_password_query (another table, a hash stored without its
    // {SCHEME}) it would never match, and rehash on login would stop. Then "" unless given:
    // posternd reads the hash again right before set_password_query, as before.
    const bool stockSchema = c.passwordQuery == DefaultPasswordQuery && c.setPasswordQuery == DefaultSetPasswordQuery;
    c.replacePasswordQuery =
        query("replace_password_query", stockSchema ? DefaultReplacePasswordQuery : "", true, "$2");
    // A compare-and-set that ignores the hash it replaces would overwrite a changed password.
    if (!c.replacePasswordQuery.empty() && c.replacePasswordQuery.find("$3") == std::string::npos) {
        throw std::invalid_argument("config key 'replace_password_query' must use $3 (the hash it replaces)");
    }
    c.setEnabledQuery = query("set_enabled_query", DefaultSetEnabledQuery, false, "$2");
    c.deleteUserQuery = query("delete_user_query", DefaultDeleteUserQuery, false);
    c.domainExistsQuery = query("domain_exists_query", DefaultDomainExistsQuery, true);
    c.listUsersQuery = query("list_users_query", DefaultListUsersQuery, false);
    c.showUserQuery = query("show_user_query", DefaultShowUserQuery, false);
    c.userAliasesQuery = query("user_aliases_query", DefaultUserAliasesQuery, true);
    c.addAppPasswordQuery = query("add_app_password_query", DefaultAddAppPasswordQuery, true, "$4");
    c.listAppPasswordsQuery = query("list_app_passwords_query", DefaultListAppPasswordsQuery, true);
    c.revokeAppPasswordQuery = query("revoke_app_password_query", DefaultRevokeAppPasswordQuery, true, "$2");
    c.requireAppPasswordQuery = query("require_app_password_query", DefaultRequireAppPasswordQuery, true, "$2");
    c.touchAppPasswordQuery = query("touch_app_password_query", DefaultTouchAppPasswordQuery, true, "$2");
    return c;
}

}  // namespace postern::plugins::postgres
