// postgres auth backend: authenticate / lookup / hasDomain over configurable, bound SQL.
#include "PostgresBackend.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include "api/AppPassword.h"
#include "api/SizeText.h"
#include "core/Utf8.h"

#include <algorithm>
#include <ctime>

namespace postern::plugins::postgres {

namespace {

constexpr std::size_t MaxAddressLength = 320;  // RFC 5321 4.5.3.1: 64 + '@' + 255

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) {
        return {};
    }
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). The connection speaks UTF8;
// an invalid byte sequence would make the server answer with an error, i.e. a TempFail for
// what is plainly an unknown name.
bool isValidUtf8(const std::string& s) {
    std::size_t i = 0;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    while (i < s.size()) {
        unsigned char c = p[i];
        std::size_t n = 0;
        unsigned cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (std::size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size() || (p[i + k] & 0xC0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF)) {
            return false;
        }
        i += n + 1;
    }
    return true;
}

std::string describe(const pg::QueryResult& r) {
    return r.error + (r.sqlState.empty() ? "" : " (SQLSTATE " + r.sqlState + ")");
}

// Appends the comma-separated addresses of a column value (PostfixAdmin's alias.goto).
void appendList(const pg::Value& value, std::vector<std::string>& out) {
    if (!value) {
        return;
    }
    std::size_t pos = 0;
    const std::string& s = *value;
    while (pos <= s.size()) {
        auto comma = s.find(',', pos);
        std::string item = core::asciiLower(trim(s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos)));
        if (!item.empty() && std::find(out.begin(), out.end(), item) == out.end()) {
            out.push_back(item);
        }
        if (comma == std::string::npos) {
            break;
        }
        pos = comma + 1;
    }
}

// A list column: a PostgreSQL array literal ({a,"b c",NULL}, as text[] comes back in text
// format) or a comma-separated list. Array elements are split on unquoted commas and
// unquoted; NULL elements are skipped. Anything else goes through appendList.
void appendListOrArray(const pg::Value& value, std::vector<std::string>& out) {
    if (!value || value->size() < 2 || value->front() != '{' || value->back() != '}') {
        appendList(value, out);
        return;
    }
    const std::string& s = *value;
    std::string item;
    bool quoted = false;  // this element was quoted (so "NULL" is a string)
    bool inQuotes = false;
    auto flush = [&] {
        if (!(quoted == false && item == "NULL")) {
            std::string v = core::asciiLower(trim(item));
            if (!v.empty() && std::find(out.begin(), out.end(), v) == out.end()) {
                out.push_back(v);
            }
        }
        item.clear();
        quoted = false;
    };
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        const char c = s[i];
        if (inQuotes) {
            if (c == '\\' && i + 2 < s.size()) {
                item += s[++i];
            } else if (c == '"') {
                inQuotes = false;
            } else {
                item += c;
            }
        } else if (c == '"') {
            inQuotes = true;
            quoted = true;
        } else if (c == ',') {
            flush();
        } else {
            item += c;
        }
    }
    if (s.size() > 2) {
        flush();
    }
}

// Highest $N in sql (0 if none): PostgreSQL refuses more bound values than a statement uses.
std::size_t highestParam(const std::string& sql) {
    std::size_t highest = 0;
    for (std::size_t i = 0; i + 1 < sql.size(); ++i) {
        if (sql[i] != '$' || sql[i + 1] < '0' || sql[i + 1] > '9') {
            continue;
        }
        std::size_t n = 0;
        std::size_t j = i + 1;
        while (j < sql.size() && sql[j] >= '0' && sql[j] <= '9' && n < 1000) {
            n = n * 10 + static_cast<std::size_t>(sql[j] - '0');
            ++j;
        }
        highest = std::max(highest, n);
    }
    return highest;
}

// A failed statement of a write, already mapped (thrown out of the body, caught in write()).
struct WriteFailure {
    api::WriteAnswer answer;
};

api::WriteAnswer mapWriteError(const pg::QueryResult& r, bool broken, const std::string& what) {
    const std::string& s = r.sqlState;
    const std::string msg = what + ": " + r.error;
    if (broken || r.isTimeout() || r.timedOut || s.empty() || s.rfind("08", 0) == 0) {
        return {api::WriteStatus::TempFail, msg};
    }
    if (r.isUniqueViolation()) {
        return {api::WriteStatus::Exists, what + ": already exists"};
    }
    if (r.isForeignKeyViolation()) {
        return {api::WriteStatus::UnknownDomain, what + ": unknown domain"};
    }
    if (r.isCheckViolation() || s.rfind("22", 0) == 0 || s.rfind("23", 0) == 0) {
        return {api::WriteStatus::Invalid, msg};
    }
    if (s == "42P01") {
        return {api::WriteStatus::ConfigError, msg + " (run 'posternctl db migrate' first)"};
    }
    return {api::WriteStatus::Failed, msg + " (SQLSTATE " + s + ")"};
}

std::uint64_t toU64(const pg::Value& v) {
    try {
        return v ? std::stoull(*v) : 0;
    } catch (const std::exception&) {
        return 0;
    }
}

// A quota column as the server enforces it (AuthFacade): bytes or K/M/G; 0 for none
// (NULL, 0, negative as PostfixAdmin's -1, or not a size). stoull read "-1" as 2^64-1.
std::uint64_t quotaOfColumn(const pg::Value& v) { return v ? api::quotaBytesOf(*v).value_or(0) : 0; }

api::WriteAnswer okAnswer() { return {api::WriteStatus::Ok, ""}; }

api::WriteAnswer noSuchUser(const std::string& address) {
    return {api::WriteStatus::UnknownUser, "no such user " + address};
}

}  // namespace

PostgresBackend::PostgresBackend(PostgresConfig config)
    : PostgresBackend(std::move(config), Executor{}) {}

PostgresBackend::PostgresBackend(PostgresConfig config, Executor executor)
    : config_(std::move(config)),
      execute_(std::move(executor)),
      passwordStatement_{"postern_password", config_.passwordQuery},
      userStatement_{"postern_user", config_.userQuery},
      aliasStatement_{"postern_alias", config_.aliasQuery},
      domainStatement_{"postern_domain", config_.domainQuery},
      sendersStatement_{"postern_senders", config_.sendersQuery} {
    if (!execute_) {
        pool_ = std::make_unique<pg::Pool>(config_.connection);
        pg::Pool* pool = pool_.get();
        execute_ = [pool](const pg::Statement& s, const pg::Params& p) { return pool->execute(s, p); };
        if (!config_.readConninfo.empty()) {
            // Same password, pool size and timeouts; only the servers differ.
            pg::ConnectSettings rs = config_.connection;
            rs.conninfo = config_.readConninfo;
            rs.applicationName = "postern-replica";
            reads_ = std::make_unique<pg::ReadRouter>(*pool_, std::make_unique<pg::Pool>(rs), config_.replicaMaxLag,
                                                      "auth.postgres");
        }
    }
}

pg::QueryResult PostgresBackend::read(const pg::Statement& statement, const pg::Params& params, bool confirmMiss,
                                      pg::ReadRouter::MissTest isMiss, bool* fromReplica) {
    if (reads_) {
        if (auto r = reads_->readReplica(statement, params, confirmMiss, isMiss)) {
            if (fromReplica) *fromReplica = true;
            return std::move(*r);
        }
        return reads_->readPrimary(statement, params);
    }
    return execute_(statement, params);
}

std::string PostgresBackend::normaliseKey(const std::string& name) {
    if (name.empty() || name.size() > MaxAddressLength || !isValidUtf8(name) ||
        std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
        return {};
    }
    return core::asciiLower(name);
}

std::optional<bool> PostgresBackend::parseBool(const pg::Value& value) {
    if (!value) {
        return std::nullopt;
    }
    const std::string v = core::asciiLower(trim(*value));
    if (v == "t" || v == "true" || v == "1" || v == "yes" || v == "y" || v == "on") {
        return true;
    }
    if (v == "f" || v == "false" || v == "0" || v == "no" || v == "n" || v == "off") {
        return false;
    }
    return std::nullopt;
}

api::AuthAnswer PostgresBackend::authenticate(const std::string& user, const std::string& password,
                                              const std::string& service, const std::string& clientIp) noexcept {
    api::AuthAnswer a;  // TempFail until one explicit path below says otherwise
    try {
        const std::string key = normaliseKey(user);
        if (key.empty()) {
            a.status = api::Status::UnknownUser;
            a.detail = "invalid user name";
            return a;
        }
        // $2: the id of the app password the password would be ("" = not in that format).
        pg::Params params{key, api::apppw::idOf(password).value_or("")};
        params.resize(std::min(params.size(), std::max<std::size_t>(1, highestParam(config_.passwordQuery))));
        // Rehash on login checks the hash is still the one the login matched, right before
        // its write (without a compare-and-set, custom queries): a replica up to
        // replica_max_lag behind would show the hash a password change just replaced, and
        // the write would put the old password back for good. The primary answers it.
        bool fromReplica = false;
        pg::QueryResult r = service == "rehash" ? execute_(passwordStatement_, params)
                                                : read(passwordStatement_, params, true, nullptr, &fromReplica);
        if (r.failed()) {
            a.detail = "password_query: " + describe(r);
            return a;
        }
        if (r.noRows()) {
            a.status = api::Status::UnknownUser;
            return a;
        }
        // Two rows for one login: which password is right? Neither; the operator must fix it.
        if (r.rows.size() != 1) {
            a.detail = "password_query returned " + std::to_string(r.rows.size()) + " rows (ambiguous)";
            return a;
        }
        const pg::Row& row = r.rows[0];
        if (row.size() < 3) {
            a.detail = "password_query must return user, password, enabled[, mailbox]";
            return a;
        }
        std::optional<bool> enabled = parseBool(row[2]);
        if (!row[0] || !enabled) {
            a.detail = "password_query returned a NULL user or a non-boolean enabled";
            return a;
        }
        a.record.user = core::asciiLower(*row[0]);
        a.record.passwordHash = row[1].value_or("");
        // A replica within replica_max_lag may still show the hash a password change just
        // replaced: the host then remembers a mismatch no longer than that bound.
        if (fromReplica) a.record.extra[api::ReplicaReadAttribute] = std::to_string(config_.replicaMaxLag.count());
        if (row.size() > 3 && row[3]) {
            a.record.mailbox = trim(*row[3]);
        }
        a.verified = false;
        if (!*enabled || a.record.passwordHash.empty()) {
            a.status = api::Status::Disabled;
            a.detail = *enabled ? "no password set" : "disabled";
            return a;
        }
        // App passwords: column 5 the senders (below), 6 the account's flag, 7.. the app password with id $2 (if any).
        const bool requireApp = row.size() > 5 && parseBool(row[5]).value_or(false);
        if (row.size() > 7 && row[6] && row[7]) {
            api::apppw::Entry e;
            e.id = *row[6];
            e.hash = *row[7];
            e.scopes = row.size() > 8 && row[8] ? api::apppw::parseScopes(*row[8]) : 0;
            e.expires = row.size() > 9 ? static_cast<std::int64_t>(toU64(row[9])) : 0;
            e.networks = row.size() > 10 ? row[10].value_or("") : "";
            a.record.passwordHash = e.hash;
            a.appPasswordId = e.id;
            a.appPasswordExpires = e.expires;
            a.appPasswordIpBound = !e.networks.empty();
            a.appPasswordLastUsed = row.size() > 11 ? static_cast<std::int64_t>(toU64(row[11])) : 0;
            a.appPasswordLastIp = row.size() > 12 ? row[12].value_or("") : "";
            e.revoked = row.size() > 13 ? static_cast<std::int64_t>(toU64(row[13])) : 0;
            a.record.extra[api::apppw::ScopesAttribute] = api::apppw::scopesText(e.scopes);
            a.refusal = api::apppw::refusal(e, service, clientIp, static_cast<std::int64_t>(::time(nullptr)));
        } else if (requireApp) {
            a.refusal = api::apppw::MainPasswordRefused;
        }
        a.record.senderAddresses.push_back(a.record.user);
        if (row.size() > 4) {
            // The password query brought the senders along (5th column): no second statement.
            appendListOrArray(row[4], a.record.senderAddresses);
        } else if (!config_.sendersQuery.empty()) {
            // Senders are part of the identity: without them the login cannot be completed.
            pg::QueryResult s = read(sendersStatement_, {key}, false);
            if (s.failed()) {
                a.record = {};
                a.detail = "senders_query: " + describe(s);
                return a;
            }
            for (const auto& srow : s.rows) {
                if (!srow.empty()) {
                    appendList(srow[0], a.record.senderAddresses);
                }
            }
        }
        a.status = api::Status::Ok;
    } catch (const std::exception& e) {
        a = {};
        a.detail = e.what();
    } catch (...) {
        a = {};
        a.detail = "unexpected error";
    }
    return a;
}

api::LookupAnswer PostgresBackend::lookup(const std::string& address) noexcept {
    api::LookupAnswer a;  // TempFail
    try {
        const std::string key = normaliseKey(address);
        if (key.empty()) {
            a.status = api::Status::NotFound;
            a.detail = "invalid address";
            return a;
        }
        // A miss is no row, or (user_query with the aliases column) one row with neither a
        // user nor an alias: either way a lagging replica's "no" is re-asked on the primary.
        pg::QueryResult u = read(userStatement_, {key}, true, [](const pg::QueryResult& r) {
            if (r.noRows()) return true;
            if (!r.ok() || r.rows.size() != 1 || r.rows[0].size() <= 4 || r.rows[0][0]) return false;
            const pg::Value& aliases = r.rows[0][4];
            return !aliases || aliases->empty() || *aliases == "{}";
        });
        if (u.failed()) {
            a.detail = "user_query: " + describe(u);
            return a;
        }
        if (u.rows.size() > 1) {
            a.detail = "user_query returned " + std::to_string(u.rows.size()) + " rows (ambiguous)";
            return a;
        }
        bool userDisabled = false;
        // A 5th column carries the alias destinations: a NULL user there means no mailbox.
        const bool combined = u.ok() && u.rows[0].size() > 4;
        if (combined) {
            appendListOrArray(u.rows[0][4], a.aliasDestinations);
        }
        if (u.ok() && !(combined && !u.rows[0][0])) {
            const pg::Row& row = u.rows[0];
            std::optional<bool> enabled = row.size() >= 2 ? parseBool(row[1]) : std::nullopt;
            if (!enabled || !row[0]) {
                a.detail = "user_query must return user, enabled[, mailbox[, quota]] (non-NULL)";
                return a;
            }
            if (*enabled) {
                a.isMailbox = true;
                a.record.user = core::asciiLower(*row[0]);
                if (row.size() > 2 && row[2]) {
                    a.record.mailbox = trim(*row[2]);
                }
                if (row.size() > 3 && row[3]) {
                    a.record.extra["quota"] = *row[3];
                }
            } else {
                userDisabled = true;
            }
        }
        if (!combined && !config_.aliasQuery.empty()) {
            pg::QueryResult al = read(aliasStatement_, {key}, !u.ok());
            if (al.failed()) {
                a = {};
                a.detail = "alias_query: " + describe(al);
                return a;
            }
            for (const auto& row : al.rows) {
                if (!row.empty()) {
                    appendList(row[0], a.aliasDestinations);
                }
            }
        }
        if (a.isMailbox || !a.aliasDestinations.empty()) {
            a.status = api::Status::Ok;
        } else if (userDisabled) {
            a.status = api::Status::Disabled;
            a.detail = "disabled";
        } else {
            a.status = api::Status::NotFound;
        }
    } catch (const std::exception& e) {
        a = {};
        a.detail = e.what();
    } catch (...) {
        a = {};
        a.detail = "unexpected error";
    }
    return a;
}

api::Status PostgresBackend::hasDomain(const std::string& domain) noexcept {
    try {
        std::string key = normaliseKey(domain);
        while (!key.empty() && key.back() == '.') {
            key.pop_back();
        }
        if (key.empty()) {
            return api::Status::NotFound;
        }
        pg::QueryResult r = read(domainStatement_, {key}, true);
        if (r.failed()) {
            // hasDomain has no detail field: say here why the host gets TempFail.
            Poco::Logger::get("postern.auth.postgres")
                .warning(core::EventLine("pg.domain_query_failed").text("error", describe(r)).str());
            return api::Status::TempFail;
        }
        return r.ok() ? api::Status::Ok : api::Status::NotFound;
    } catch (...) {
        return api::Status::TempFail;
    }
}

api::ProbeAnswer PostgresBackend::probe() noexcept {
    api::ProbeAnswer answer;  // TempFail
    try {
        // A trivial statement through the same pool and deadlines as every lookup.
        static const pg::Statement probeStatement{"postern_probe", "SELECT 1"};
        const pg::QueryResult r = execute_(probeStatement, {});
        if (r.ok()) {
            answer.status = api::Status::Ok;
        } else {
            answer.detail = "postgres: " + (r.failed() ? describe(r) : std::string("SELECT 1 returned no row"));
        }
    } catch (const std::exception& e) {
        answer = {};
        answer.detail = std::string("postgres: ") + e.what();
    } catch (...) {
        answer = {};
        answer.detail = "postgres: unexpected error";
    }
    return answer;
}

api::WriteAnswer PostgresBackend::write(const std::function<api::WriteAnswer(const Runner&)>& body) noexcept {
    try {
        api::WriteAnswer answer{api::WriteStatus::Failed, "postgres: no answer"};
        auto runBody = [&](const Runner& runner) {
            try {
                answer = body(runner);
            } catch (const WriteFailure& f) {
                answer = f.answer;
            }
        };
        if (!pool_) {
            // Tests: statements through the executor, one by one.
            runBody([this](const std::string& what, const std::string& sql, pg::Params params) {
                params.resize(std::min(params.size(), highestParam(sql)));
                pg::QueryResult r = execute_(pg::Statement{"postern_write", sql}, params);
                if (r.failed()) {
                    throw WriteFailure{mapWriteError(r, false, what)};
                }
                return r;
            });
            return answer;
        }
        bool ran = false;
        pg::QueryResult last = pool_->withConnection([&](pg::Connection& c) {
            ran = true;
            runBody([&c](const std::string& what, const std::string& sql, pg::Params params) {
                params.resize(std::min(params.size(), highestParam(sql)));
                pg::QueryResult r = c.execParams(sql, params);
                if (r.failed()) {
                    throw WriteFailure{mapWriteError(r, c.isBroken(r), what)};
                }
                return r;
            });
            pg::QueryResult done;
            done.status = pg::QueryStatus::Ok;
            return done;
        });
        if (!ran) {
            return {api::WriteStatus::TempFail, "cannot connect to PostgreSQL: " + last.error};
        }
        return answer;
    } catch (const std::exception& e) {
        return {api::WriteStatus::Failed, std::string("postgres: ") + e.what()};
    } catch (...) {
        return {api::WriteStatus::Failed, "postgres: unexpected error"};
    }
}

api::WriteAnswer PostgresBackend::setPassword(const std::string& user, const std::string& newHash) noexcept {
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (key.empty() || run("user " + key, config_.setPasswordQuery, {key, newHash}).noRows()) {
            return noSuchUser(user);
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::replacePassword(const std::string& user, const std::string& oldHash,
                                                  const std::string& newHash) noexcept {
    if (config_.replacePasswordQuery.empty()) {
        return {api::WriteStatus::Unsupported, "replace_password_query is empty"};
    }
    return write([&](const Runner& run) -> api::WriteAnswer {
        const std::string key = normaliseKey(user);
        if (key.empty() || run("user " + key, config_.replacePasswordQuery, {key, newHash, oldHash}).noRows()) {
            return {api::WriteStatus::Changed, "the stored hash of " + user + " changed (or the user is gone)"};
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::checkNewUser(const std::string& address) noexcept {
    return write([&](const Runner& run) -> api::WriteAnswer {
        const std::string key = normaliseKey(address);
        if (key.empty()) {
            return {api::WriteStatus::Invalid, "invalid address"};
        }
        const auto at = key.rfind('@');
        const std::string domain = at == std::string::npos ? std::string() : key.substr(at + 1);
        if (!config_.domainExistsQuery.empty() && run("domain", config_.domainExistsQuery, {domain}).noRows()) {
            return {api::WriteStatus::UnknownDomain, "unknown domain " + domain};
        }
        if (run("user", config_.showUserQuery, {key}).ok()) {
            return {api::WriteStatus::Exists, "user " + key + " already exists"};
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::addUser(const api::NewUser& u) noexcept {
    if (!u.senders.empty() && config_.addSenderQuery.empty()) {
        return {api::WriteStatus::Unsupported, "--sender needs add_sender_query, which is empty for this backend"};
    }
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(u.address);
        if (key.empty()) {
            return api::WriteAnswer{api::WriteStatus::Invalid, "invalid address"};
        }
        const auto at = key.rfind('@');
        const std::string domain = at == std::string::npos ? std::string() : key.substr(at + 1);
        run("begin", "BEGIN", {});
        try {
            run("user " + key, config_.addUserQuery,
                {key, domain, u.passwordHash, u.enabled ? "true" : "false", u.mailbox, std::to_string(u.quotaBytes)});
            for (const auto& s : u.senders) {
                run("sender " + s, config_.addSenderQuery, {key, s});
            }
            run("commit", "COMMIT", {});
        } catch (...) {
            try {
                run("rollback", "ROLLBACK", {});
            } catch (...) {
                // The first failure is the one to report; a broken connection is dropped.
            }
            throw;
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::setEnabled(const std::string& user, bool enabled) noexcept {
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (key.empty() || run("user " + key, config_.setEnabledQuery, {key, enabled ? "true" : "false"}).noRows()) {
            return noSuchUser(user);
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::removeUser(const std::string& user) noexcept {
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (key.empty() || run("user " + key, config_.deleteUserQuery, {key}).noRows()) {
            return noSuchUser(user);
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::listUsers(const std::string& domain, std::vector<api::UserInfo>& out) noexcept {
    return write([&](const Runner& run) {
        pg::QueryResult r = run("users", config_.listUsersQuery, {core::asciiLower(domain)});
        out.clear();
        for (const auto& row : r.rows) {
            api::UserInfo u;
            u.address = row.size() > 0 ? row[0].value_or("") : "";
            u.enabled = row.size() > 1 && parseBool(row[1]).value_or(false);
            u.mailbox = row.size() > 2 ? row[2].value_or("") : "";
            u.quotaBytes = row.size() > 3 ? quotaOfColumn(row[3]) : 0;
            out.push_back(std::move(u));
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::showUser(const std::string& address, api::UserInfo& out) noexcept {
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(address);
        if (key.empty()) {
            return noSuchUser(address);
        }
        pg::QueryResult r = run("user", config_.showUserQuery, {key});
        if (r.noRows()) {
            return noSuchUser(address);
        }
        const auto& row = r.rows[0];
        auto col = [&](std::size_t i) { return row.size() > i ? row[i].value_or("") : std::string(); };
        api::UserInfo u;
        u.address = col(0);
        u.enabled = row.size() > 1 && parseBool(row[1]).value_or(false);
        u.scheme = api::schemeOfHash(col(2));
        u.mailbox = col(3);
        u.quotaBytes = row.size() > 4 ? quotaOfColumn(row[4]) : 0;
        u.created = col(5);
        u.updated = col(6);
        if (!config_.sendersQuery.empty()) {
            for (const auto& s : run("senders", config_.sendersQuery, {key}).rows) {
                u.senders.push_back(s.empty() ? "" : s[0].value_or(""));
            }
        }
        if (!config_.userAliasesQuery.empty()) {
            for (const auto& a : run("aliases", config_.userAliasesQuery, {key}).rows) {
                u.aliases.push_back(a.empty() ? "" : a[0].value_or(""));
            }
        }
        out = std::move(u);
        return okAnswer();
    });
}

}  // namespace postern::plugins::postgres

namespace postern::plugins::postgres {

namespace {

api::WriteAnswer noAppPasswords() {
    return {api::WriteStatus::Unsupported, "app passwords are not configured for this backend (*_app_password*_query empty)"};
}

std::int64_t toI64(const pg::Value& v) { return static_cast<std::int64_t>(toU64(v)); }

}  // namespace

api::WriteAnswer PostgresBackend::addAppPassword(const api::NewAppPassword& app) noexcept {
    if (config_.addAppPasswordQuery.empty()) return noAppPasswords();
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(app.user);
        if (key.empty() || run("app password " + app.id, config_.addAppPasswordQuery,
                               {key, app.id, app.label, app.passwordHash, app.scopes, std::to_string(app.expires),
                                app.networks})
                               .noRows()) {
            return noSuchUser(app.user);
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::listAppPasswords(const std::string& user, bool& requireAppPassword,
                                                   std::vector<api::AppPasswordInfo>& out) noexcept {
    if (config_.listAppPasswordsQuery.empty()) return noAppPasswords();
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (key.empty()) {
            return noSuchUser(user);
        }
        // The account's flag comes with its password row (the same query as a login, no app id).
        pg::QueryResult u = run("user", config_.passwordQuery,
                                {key, std::string()});
        if (u.noRows()) {
            return noSuchUser(user);
        }
        requireAppPassword = u.rows[0].size() > 5 && parseBool(u.rows[0][5]).value_or(false);
        out.clear();
        for (const auto& row : run("app passwords", config_.listAppPasswordsQuery, {key}).rows) {
            auto col = [&](std::size_t i) { return row.size() > i ? row[i].value_or("") : std::string(); };
            api::AppPasswordInfo i;
            i.id = col(0);
            i.label = col(1);
            i.scopes = col(2);
            i.expires = row.size() > 3 ? toI64(row[3]) : 0;
            i.networks = col(4);
            i.created = row.size() > 5 ? toI64(row[5]) : 0;
            i.lastUsed = row.size() > 6 ? toI64(row[6]) : 0;
            i.lastIp = col(7);
            i.revoked = row.size() > 8 ? toI64(row[8]) : 0;
            out.push_back(std::move(i));
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::revokeAppPassword(const std::string& user, const std::string& id) noexcept {
    if (config_.revokeAppPasswordQuery.empty()) return noAppPasswords();
    return write([&](const Runner& run) -> api::WriteAnswer {
        const std::string key = normaliseKey(user);
        if (key.empty() || run("app password " + id, config_.revokeAppPasswordQuery, {key, id}).noRows()) {
            return {api::WriteStatus::UnknownUser, "no live app password " + id + " for " + user};
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::setRequireAppPassword(const std::string& user, bool on) noexcept {
    if (config_.requireAppPasswordQuery.empty()) return noAppPasswords();
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (key.empty() ||
            run("user " + key, config_.requireAppPasswordQuery, {key, on ? "true" : "false"}).noRows()) {
            return noSuchUser(user);
        }
        return okAnswer();
    });
}

api::WriteAnswer PostgresBackend::touchAppPassword(const std::string& user, const std::string& id,
                                                   const std::string& clientIp) noexcept {
    if (config_.touchAppPasswordQuery.empty()) return okAnswer();
    return write([&](const Runner& run) {
        const std::string key = normaliseKey(user);
        if (!key.empty()) {
            run("app password " + id, config_.touchAppPasswordQuery, {key, id, clientIp});
        }
        return okAnswer();
    });
}

}  // namespace postern::plugins::postgres
