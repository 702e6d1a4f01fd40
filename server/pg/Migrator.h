// Applies the numbered SQL migrations of schema/postgres/ (NNN_name.sql) that are not yet
// recorded in schema_migrations, each in its own transaction together with its record.
#pragma once

#include "pg/Connection.h"

#include <chrono>
#include <iosfwd>
#include <string>
#include <vector>

namespace postern::pg {

struct Migration {
    int version = 0;      // NNN
    std::string name;     // "initial"
    std::string path;
    std::string sql;
    std::string sha256;   // hex of the file's bytes, recorded to spot edited migrations
};

// Not thread-safe; one run at a time per database is enforced with a transaction-scoped
// advisory lock, so two posternctl processes cannot apply the same file twice.
class Migrator {
public:
    // lockTimeout: the longest one migration waits for a lock (SET LOCAL lock_timeout); 0 =
    // the server's setting.
    explicit Migrator(Connection& connection, std::chrono::milliseconds lockTimeout = {})
        : connection_(connection), lockTimeout_(lockTimeout) {}

    // The files of dir named NNN_name.sql, sorted by version. Throws std::runtime_error on an
    // unreadable dir or file, a duplicate version, or another *.sql file with a bad name.
    static std::vector<Migration> scan(const std::string& dir);

    // Creates schema_migrations if needed (under the same lock), then applies each migration whose version is not
    // recorded: BEGIN; lock; re-check; the file; INSERT the record; COMMIT. Prints one line
    // per migration to out ("applied 001_initial", "skip 001_initial (applied ...)").
    // A recorded migration whose file changed since is reported as a warning, not re-run.
    // Returns the number applied; throws std::runtime_error naming the file and the server's
    // error (that migration is rolled back; earlier ones stay).
    int migrate(const std::vector<Migration>& migrations, std::ostream& out);

private:
    void run(const std::string& sql, const std::string& what);

    void lock(const std::string& what);

    Connection& connection_;
    std::chrono::milliseconds lockTimeout_;
};

}  // namespace postern::pg
