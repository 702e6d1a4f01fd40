// postgres auth backend: answers authenticate / lookup / hasDomain from PostgreSQL with the
// configured queries over a server/pg connection pool.
#pragma once

#include "PostgresConfig.h"
#include "api/PluginApi.h"
#include "pg/Connection.h"
#include "pg/Pool.h"
#include "pg/ReadRouter.h"
#include "pg/QueryResult.h"

#include <functional>
#include <memory>
#include <string>

namespace postern::plugins::postgres {

// Three outcomes, kept apart (yes / no / try later):
//  - a query that ran and matched           -> Ok / Disabled
//  - a query that ran and matched nothing   -> UnknownUser / NotFound
//  - anything else -> TempFail: database unreachable or slow (connect_timeout,
//    statement_timeout), an SQL error, more than one row where one is expected (ambiguous
//    data fails closed), a value that cannot be read (NULL user, enabled not a boolean).
// Addresses are lower-cased and always bound as $1. A name that is not valid UTF-8, holds a
// NUL or control character, or is longer than 320 bytes cannot be in the table: it is
// unknown without asking (and cannot make the server's encoding check fail with a TempFail).
//
// Thread-safe: the pool hands each call its own connection; the object is immutable.
class PostgresBackend final : public api::Backend {
public:
    // Runs one prepared statement; the default is pg::Pool::execute. Tests pass a fake.
    using Executor = std::function<pg::QueryResult(const pg::Statement&, const pg::Params&)>;

    // Makes the pool (no connection yet: the daemon starts even while PostgreSQL is down).
    explicit PostgresBackend(PostgresConfig config);
    PostgresBackend(PostgresConfig config, Executor executor);

    // Ok + stored hash (verified = false) + senders (login first) + mailbox; Disabled
    // (enabled false, or a NULL/empty password; the hash is still returned so the core spends
    // the same time); UnknownUser; TempFail.
    api::AuthAnswer authenticate(const std::string& user, const std::string& password,
                                 const std::string& service, const std::string& clientIp) noexcept override;

    // Ok: a mailbox (isMailbox, record.user/mailbox, extra["quota"]) and/or alias destinations;
    // Disabled: a disabled user that is no alias; NotFound; TempFail.
    api::LookupAnswer lookup(const std::string& address) noexcept override;

    // Ok: domain_query returned a row; NotFound; TempFail.
    api::Status hasDomain(const std::string& domain) noexcept override;

    // Readiness: Ok if "SELECT 1" runs through the pool (bounded by connect_timeout and
    // statement_timeout); TempFail with the error otherwise.
    api::ProbeAnswer probe() noexcept override;

    // Writes with the *_query keys of PostgresConfig, each on one pooled connection without
    // the pool's retry (an INSERT must not run twice); add_user and its senders in one
    // transaction. Errors: unreachable / timeout -> TempFail; unique violation -> Exists;
    // foreign key -> UnknownDomain; check or data error -> Invalid; missing table ->
    // ConfigError; no row affected by an UPDATE/DELETE -> UnknownUser.
    api::WriteAnswer setPassword(const std::string& user, const std::string& newHash) noexcept override;
    api::WriteAnswer replacePassword(const std::string& user, const std::string& oldHash,
                                     const std::string& newHash) noexcept override;
    api::WriteAnswer checkNewUser(const std::string& address) noexcept override;
    api::WriteAnswer addUser(const api::NewUser& user) noexcept override;
    api::WriteAnswer setEnabled(const std::string& user, bool enabled) noexcept override;
    api::WriteAnswer removeUser(const std::string& user) noexcept override;
    api::WriteAnswer listUsers(const std::string& domain, std::vector<api::UserInfo>& out) noexcept override;
    api::WriteAnswer showUser(const std::string& address, api::UserInfo& out) noexcept override;

    // App passwords (schema 003) with the *_app_password*_query keys; the login side is
    // part of password_query (one statement per login).
    api::WriteAnswer addAppPassword(const api::NewAppPassword& app) noexcept override;
    api::WriteAnswer listAppPasswords(const std::string& user, bool& requireAppPassword,
                                      std::vector<api::AppPasswordInfo>& out) noexcept override;
    api::WriteAnswer revokeAppPassword(const std::string& user, const std::string& id) noexcept override;
    api::WriteAnswer setRequireAppPassword(const std::string& user, bool on) noexcept override;
    api::WriteAnswer touchAppPassword(const std::string& user, const std::string& id,
                                      const std::string& clientIp) noexcept override;

    // Lower-cases; "" if the name cannot be a key (see the class comment).
    static std::string normaliseKey(const std::string& name);

private:
    // Runs one statement of a write (params trimmed to the highest $N the SQL uses).
    using Runner = std::function<pg::QueryResult(const std::string& what, const std::string& sql, pg::Params params)>;
    // Calls body with a runner on one connection; a failed statement ends body (it throws
    // the answer) and is mapped to a WriteAnswer.
    api::WriteAnswer write(const std::function<api::WriteAnswer(const Runner&)>& body) noexcept;

    // A lookup: on the replica (read_conninfo) when it may answer, else on conninfo.
    // confirmMiss: no row from a lagging replica is re-asked on conninfo (pg::ReadRouter).
    // fromReplica (optional): set when the replica answered.
    pg::QueryResult read(const pg::Statement& statement, const pg::Params& params, bool confirmMiss,
                         pg::ReadRouter::MissTest isMiss = nullptr, bool* fromReplica = nullptr);

    // Tri-state boolean column: "t"/"true"/"1"/"yes"/"on" and the opposites; else nullopt.
    static std::optional<bool> parseBool(const pg::Value& value);

    const PostgresConfig config_;
    std::unique_ptr<pg::Pool> pool_;  // null when a test executor is used
    Executor execute_;
    std::unique_ptr<pg::ReadRouter> reads_;  // null without read_conninfo (or with a test executor)
    const pg::Statement passwordStatement_;
    const pg::Statement userStatement_;
    const pg::Statement aliasStatement_;
    const pg::Statement domainStatement_;
    const pg::Statement sendersStatement_;
};

}  // namespace postern::plugins::postgres
