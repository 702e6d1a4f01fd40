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
//                   enabled (boolean)[, mailbox[, senders]]. More than one row is ambiguous
//                   -> TempFail. senders (5th column): the extra MAIL FROM addresses as an
//                   array (text[]) or a comma-separated list; when present, senders_query is
//                   not run (one statement per login instead of two).
//   user_query      $1 = address. Columns: user, enabled[, mailbox[, quota[, aliases]]]. One
//                   row at most. aliases (5th column): the address's alias destinations as
//                   an array or a comma-separated list; when present, alias_query is not run
//                   and a row with a NULL user (and enabled) means "no mailbox here" - so the
//                   query returns one row for an alias-only address too.
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
//   replace_password_query  posternd's rehash on login: $1 address, $2 the new {SCHEME}hash,
//                        $3 the hash it replaces, as password_query returned it; must write
//                        only while that hash is still stored. No row affected = the hash
//                        changed (or the user is gone): nothing is written. "" = no
//                        compare-and-set (posternd checks again and uses set_password_query).
//                        Default: the stock UPDATE when password_query and set_password_query
//                        are the stock ones, else "".
//   set_enabled_query    $1 address, $2 enabled (true/false). No row affected = no such user.
//   delete_user_query    $1 address. No row affected = no such user.
//   domain_exists_query  $1 domain. Any row = user add may add to it ("" = not checked).
//   list_users_query     $1 domain ("" = all). Columns: address, enabled[, mailbox[, quota]].
//   show_user_query      $1 address. Columns: address, enabled, password[, mailbox[, quota[,
//                        created[, updated]]]]; only the hash's scheme is shown. Senders come
//                        from senders_query.
//   user_aliases_query   $1 address. Column 1: aliases delivering to it ("" = none shown).
//
// App passwords (schema/postgres/003_app_passwords.sql; "" = this backend has none):
//   add_app_password_query      $1 address, $2 id, $3 label, $4 {SCHEME}hash, $5 scopes
//                               ("smtp,pop3"), $6 expires (unix s, 0 = never), $7 networks
//                               ("cidr,cidr" or ""). No row affected = no such user.
//   list_app_passwords_query    $1 address. Columns: id, label, scopes, expires, networks,
//                               created, last used, last IP, revoked (unix s or NULL).
//   revoke_app_password_query   $1 address, $2 id. No row affected = no such live app password.
//   require_app_password_query  $1 address, $2 true/false. No row = no such user.
//   touch_app_password_query    $1 address, $2 id, $3 client IP: the last use (posternd).
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
    std::string replacePasswordQuery;
    std::string setEnabledQuery;
    std::string deleteUserQuery;
    std::string domainExistsQuery;
    std::string listUsersQuery;
    std::string showUserQuery;
    std::string userAliasesQuery;
    // App passwords.
    std::string addAppPasswordQuery;
    std::string listAppPasswordsQuery;
    std::string revokeAppPasswordQuery;
    std::string requireAppPasswordQuery;
    std::string touchAppPasswordQuery;

    // Throws std::invalid_argument naming the key (unknown key, missing conninfo, bad value,
    // empty required query, a query without $1, a too permissive password_file).
    static PostgresConfig fromMap(const std::map<std::string, std::string>& config);
};

// One statement per login: the account, its sender addresses (5th column) and, when the
// password has an app password's form, that one app password (by its id, index
// app_passwords_user_public_id_key). The senders_query default stays for `posternctl user show`
// and for custom password queries without the 5th column.
inline constexpr const char* DefaultPasswordQuery =
    "SELECT u.address, u.password, u.enabled AND d.enabled, u.mailbox, "
    "ARRAY(SELECT s.address FROM user_senders s WHERE s.user_id = u.id ORDER BY s.address), "
    "u.require_app_password, "
    "ap.public_id, ap.password, array_to_string(ap.scopes, ','), extract(epoch FROM ap.expires_at)::bigint, "
    "array_to_string(ap.networks, ','), extract(epoch FROM ap.last_used_at)::bigint, host(ap.last_used_ip), "
    "extract(epoch FROM ap.revoked_at)::bigint "
    "FROM users u JOIN domains d ON d.name = u.domain "
    "LEFT JOIN app_passwords ap ON ap.user_id = u.id AND ap.public_id = $2 "
    "WHERE u.address = $1";
// Mailbox and alias destinations in one statement: always one row (user NULL when the
// address has no mailbox); alias_query's default stays for custom 4-column user queries.
inline constexpr const char* DefaultUserQuery =
    "SELECT u.address, u.enabled AND d.enabled, u.mailbox, u.quota_bytes, "
    "ARRAY(SELECT a.destination FROM aliases a JOIN domains ad ON ad.name = a.domain "
    "WHERE a.address = $1 AND a.enabled AND ad.enabled ORDER BY a.destination) "
    "FROM (SELECT $1::text AS address) k LEFT JOIN users u ON u.address = k.address "
    "LEFT JOIN domains d ON d.name = u.domain";
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
inline constexpr const char* DefaultReplacePasswordQuery =
    "UPDATE users SET password = $2 WHERE address = $1 AND password = $3";
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

inline constexpr const char* DefaultAddAppPasswordQuery =
    "INSERT INTO app_passwords (user_id, public_id, label, password, scopes, expires_at, networks) "
    "SELECT id, $2, $3, $4, string_to_array($5, ','), CASE WHEN $6::bigint = 0 THEN NULL ELSE to_timestamp($6::bigint) END, "
    "COALESCE(string_to_array(NULLIF($7, ''), ','), '{}')::cidr[] FROM users WHERE address = $1";
inline constexpr const char* DefaultListAppPasswordsQuery =
    "SELECT ap.public_id, ap.label, array_to_string(ap.scopes, ','), extract(epoch FROM ap.expires_at)::bigint, "
    "array_to_string(ap.networks, ','), extract(epoch FROM ap.created_at)::bigint, "
    "extract(epoch FROM ap.last_used_at)::bigint, host(ap.last_used_ip), extract(epoch FROM ap.revoked_at)::bigint "
    "FROM app_passwords ap JOIN users u ON u.id = ap.user_id WHERE u.address = $1 ORDER BY ap.created_at, ap.id";
inline constexpr const char* DefaultRevokeAppPasswordQuery =
    "UPDATE app_passwords ap SET revoked_at = now() FROM users u "
    "WHERE u.id = ap.user_id AND u.address = $1 AND ap.public_id = $2 AND ap.revoked_at IS NULL";
inline constexpr const char* DefaultRequireAppPasswordQuery =
    "UPDATE users SET require_app_password = $2 WHERE address = $1";
inline constexpr const char* DefaultTouchAppPasswordQuery =
    "UPDATE app_passwords ap SET last_used_at = now(), last_used_ip = $3::inet FROM users u "
    "WHERE u.id = ap.user_id AND u.address = $1 AND ap.public_id = $2";

}  // namespace postern::plugins::postgres
