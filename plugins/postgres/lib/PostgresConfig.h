// Configuration of one postgres auth backend: the connection (server/pg) and the five
// queries, each with $1 bound to the lower-cased address or domain (like Dovecot's
// password_query / user_query, but bound, never spliced).
#pragma once

#include "pg/ConnectSettings.h"

#include <map>
#include <string>

namespace postern::plugins::postgres {

// Keys (under auth.backend.<instance>.): the connection keys of pg::ConnectSettings
// (conninfo, password_file, pool_size, connect_timeout, statement_timeout) and:
//
//   password_query  $1 = login. Columns by position: user, password ({SCHEME}hash),
//                   enabled (boolean)[, mailbox]. More than one row is ambiguous -> TempFail.
//   user_query      $1 = address. Columns: user, enabled[, mailbox[, quota]]. One row at most.
//   alias_query     $1 = address. Column 1 of every row: destinations (a row may hold a
//                   comma-separated list, as PostfixAdmin's alias.goto does).
//   domain_query    $1 = domain. Any row = the domain is ours.
//   senders_query   $1 = login. Column 1 of every row: an extra MAIL FROM address the user
//                   may use ("" = only the login address).
//
// The defaults match schema/postgres/001_initial.sql.
struct PostgresConfig {
    pg::ConnectSettings connection;
    std::string passwordQuery;
    std::string userQuery;
    std::string aliasQuery;
    std::string domainQuery;
    std::string sendersQuery;

    // Throws std::invalid_argument naming the key (unknown key, missing conninfo, bad value,
    // empty required query, a query without $1, a too permissive password_file).
    static PostgresConfig fromMap(const std::map<std::string, std::string>& config);
};

inline constexpr const char* DefaultPasswordQuery =
    "SELECT u.address, u.password, u.enabled AND d.enabled, u.mailbox "
    "FROM users u JOIN domains d ON d.name = u.domain WHERE u.address = $1";
inline constexpr const char* DefaultUserQuery =
    "SELECT u.address, u.enabled AND d.enabled, u.mailbox, u.quota_bytes "
    "FROM users u JOIN domains d ON d.name = u.domain WHERE u.address = $1";
inline constexpr const char* DefaultAliasQuery =
    "SELECT a.destination FROM aliases a JOIN domains d ON d.name = a.domain "
    "WHERE a.address = $1 AND a.enabled AND d.enabled ORDER BY a.destination";
inline constexpr const char* DefaultDomainQuery = "SELECT 1 FROM domains WHERE name = $1 AND enabled";
inline constexpr const char* DefaultSendersQuery =
    "SELECT s.address FROM user_senders s JOIN users u ON u.id = s.user_id "
    "WHERE u.address = $1 ORDER BY s.address";

}  // namespace postern::plugins::postgres
