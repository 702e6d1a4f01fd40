// Configuration of one postgres auth backend: the connection (server/pg) and the five
// queries, each with $1 bound to the lower-cased address or domain (like Dovecot's
// password_query / user_query, but bound, never spliced).
#pragma once

#include "pg/ConnectSettings.h"

#include <chrono>
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
// Read replica (lookups only: password, user, alias, domain and senders queries):
//   read_conninfo    libpq conninfo of a streaming replica, e.g. with several standbys and
//                    target_session_attrs=prefer-standby ("" = every query on conninfo).
//                    Same password_file, pool_size and timeouts as conninfo. A replica that
//                    is down, fails a query or lags more than replica_max_lag is not asked;
//                    a login or address it does not know is re-asked on conninfo while it
//                    lags (pg::ReadRouter). Writes always go to conninfo.
//   replica_max_lag  replay lag the replica may have and still answer (default 1s).
//
// Writes (posternctl user ..., and set_password for a new hash after a login), bound like
// the reads; a query may use fewer trailing parameters than offered ($1..$N without gaps):
//
//   add_user_query       $1 address, $2 domain, $3 {SCHEME}hash, $4 enabled (true/false),
//                        $5 mailbox ("" = default), $6 quota bytes (0 = none).
//   add_sender_query     $1 address, $2 an extra MAIL FROM address ("" = --sender refused).
//                        Runs in add_user's transaction.
//   set_password_query   $1 address, $2 {SCHEME}hash. No row affected = no such user.
//   set_enabled_query    $1 address, $2 enabled (true/false). No row affected = no such user.
//   delete_user_query    $1 address. No row affected = no such user.
//   domain_exists_query  $1 domain. Any row = user add may add to it ("" = not checked).
//   list_users_query     $1 domain ("" = all). Columns: address, enabled[, mailbox[, quota]].
//   show_user_query      $1 address. Columns: address, enabled, password[, mailbox[, quota[,
//                        created[, updated]]]]; only the hash's scheme is shown. Senders come
//                        from senders_query.
//   user_aliases_query   $1 address. Column 1: aliases delivering to it ("" = none shown).
//
// The defaults match schema/postgres/001_initial.sql.
struct PostgresConfig {
    pg::ConnectSettings connection;
    std::string readConninfo;  // "" = no replica
    std::chrono::milliseconds replicaMaxLag{1000};
    std::string passwordQuery;
    std::string userQuery;
    std::string aliasQuery;
    std::string domainQuery;
    std::string sendersQuery;
    std::string addUserQuery;
    std::string addSenderQuery;
    std::string setPasswordQuery;
    std::string setEnabledQuery;
    std::string deleteUserQuery;
    std::string domainExistsQuery;
    std::string listUsersQuery;
    std::string showUserQuery;
    std::string userAliasesQuery;

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

inline constexpr const char* DefaultAddUserQuery =
    "INSERT INTO users (address, domain, password, enabled, mailbox, quota_bytes) "
    "VALUES ($1, $2, $3, $4, $5, $6)";
inline constexpr const char* DefaultAddSenderQuery =
    "INSERT INTO user_senders (user_id, address) SELECT id, $2 FROM users WHERE address = $1";
inline constexpr const char* DefaultSetPasswordQuery = "UPDATE users SET password = $2 WHERE address = $1";
inline constexpr const char* DefaultSetEnabledQuery = "UPDATE users SET enabled = $2 WHERE address = $1";
inline constexpr const char* DefaultDeleteUserQuery = "DELETE FROM users WHERE address = $1";
inline constexpr const char* DefaultDomainExistsQuery = "SELECT 1 FROM domains WHERE name = $1";
inline constexpr const char* DefaultListUsersQuery =
    "SELECT address, enabled, mailbox, quota_bytes FROM users WHERE $1::text = '' OR domain = $1 ORDER BY address";
inline constexpr const char* DefaultShowUserQuery =
    "SELECT address, enabled, password, mailbox, quota_bytes, created_at::text, updated_at::text "
    "FROM users WHERE address = $1";
inline constexpr const char* DefaultUserAliasesQuery =
    "SELECT address FROM aliases WHERE destination = $1 ORDER BY address";

}  // namespace postern::plugins::postgres
