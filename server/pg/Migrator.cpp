// Applies the numbered SQL migrations of schema/postgres/ not yet recorded in schema_migrations.
#include "pg/Migrator.h"

#include <openssl/evp.h>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>
#include <stdexcept>

namespace postern::pg {

namespace {

// Any fixed 64-bit number: posternctl's advisory lock key for migrations.
constexpr const char* MigrationLockKey = "7072656e736d6967";  // "prensmig" in hex

std::string sha256Hex(const std::string& data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
        throw std::runtime_error("SHA-256 failed");
    }
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 0xf];
    }
    return out;
}

std::string label(const Migration& m) {
    char num[16];
    std::snprintf(num, sizeof num, "%03d", m.version);
    return std::string(num) + "_" + m.name;
}

}  // namespace

std::vector<Migration> Migrator::scan(const std::string& dir) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
    if (!d) {
        throw std::runtime_error("cannot read the schema directory " + dir);
    }
    std::map<int, Migration> byVersion;
    while (dirent* e = ::readdir(d.get())) {
        const std::string file = e->d_name;
        if (file.size() < 4 || file.compare(file.size() - 4, 4, ".sql") != 0) {
            continue;
        }
        // NNN_name.sql: three or more digits, '_', a name of [a-z0-9_].
        std::size_t i = 0;
        while (i < file.size() && file[i] >= '0' && file[i] <= '9') {
            ++i;
        }
        const std::string name = file.substr(i + 1, file.size() - 4 - (i + 1));
        const bool nameOk = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        });
        if (i < 3 || i > 6 || i >= file.size() || file[i] != '_' || !nameOk) {
            throw std::runtime_error("schema file " + dir + "/" + file + ": name must be NNN_name.sql");
        }
        Migration m;
        m.version = std::stoi(file.substr(0, i));
        m.name = name;
        m.path = dir + "/" + file;
        std::ifstream in(m.path, std::ios::binary);
        std::ostringstream text;
        text << in.rdbuf();
        if (!in) {
            throw std::runtime_error("cannot read " + m.path);
        }
        m.sql = text.str();
        m.sha256 = sha256Hex(m.sql);
        if (byVersion.count(m.version)) {
            throw std::runtime_error("two schema files with version " + std::to_string(m.version) + ": " +
                                     byVersion[m.version].path + " and " + m.path);
        }
        byVersion.emplace(m.version, std::move(m));
    }
    std::vector<Migration> out;
    for (auto& [v, m] : byVersion) {
        out.push_back(std::move(m));
    }
    return out;
}

void Migrator::run(const std::string& sql, const std::string& what) {
    QueryResult r = connection_.exec(sql);
    if (r.failed()) {
        throw std::runtime_error(what + ": " + r.error + (r.sqlState.empty() ? "" : " (SQLSTATE " + r.sqlState + ")"));
    }
}

void Migrator::lock(const std::string& what) {
    // Serialises concurrent migrators; released by COMMIT/ROLLBACK.
    run(std::string("SELECT pg_advisory_xact_lock(x'") + MigrationLockKey + "'::bigint)", what);
    // A number, not client text.
    if (lockTimeout_.count() > 0) run("SET LOCAL lock_timeout = " + std::to_string(lockTimeout_.count()), what);
}

int Migrator::migrate(const std::vector<Migration>& migrations, std::ostream& out) {
    // Under the lock too: two first runs at once would collide creating the table's type.
    run("BEGIN", "create schema_migrations");
    try {
        lock("create schema_migrations");
        run("CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " sha256 text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())",
            "create schema_migrations");
        run("COMMIT", "create schema_migrations");
    } catch (...) {
        connection_.exec("ROLLBACK");
        throw;
    }
    int applied = 0;
    for (const auto& m : migrations) {
        const std::string what = label(m);
        run("BEGIN", what);
        try {
            lock(what);
            QueryResult seen = connection_.execParams(
                "SELECT sha256, applied_at::text FROM schema_migrations WHERE version = $1",
                {std::to_string(m.version)});
            if (seen.failed()) {
                throw std::runtime_error(what + ": " + seen.error);
            }
            if (seen.ok()) {
                run("COMMIT", what);
                const std::string& sum = seen.rows[0][0].value_or("");
                out << "skip " << what << " (applied " << seen.rows[0][1].value_or("?") << ")"
                    << (sum != m.sha256 ? "; warning: the file changed since it was applied" : "") << "\n";
                continue;
            }
            run(m.sql, what + " (" + m.path + ")");
            QueryResult rec = connection_.execParams(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                {std::to_string(m.version), m.name, m.sha256});
            if (rec.failed()) {
                throw std::runtime_error(what + ": recording it failed: " + rec.error);
            }
            run("COMMIT", what);
        } catch (...) {
            connection_.exec("ROLLBACK");
            throw;
        }
        out << "applied " << what << "\n";
        ++applied;
    }
    return applied;
}

}  // namespace postern::pg
