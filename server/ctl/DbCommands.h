// posternctl db migrate: applies schema/postgres/NNN_name.sql files not yet recorded in
// schema_migrations, each in one transaction.
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// Options: --schema-dir DIR (default: the source tree's schema/postgres from the build tree,
// /usr/share/postern/schema/postgres installed; Layout.h), --timeout D (10m: the longest
// one migration file may run, instead of the backend's statement_timeout), --lock-timeout D
// (10s: the longest a migration waits for a table lock; then it fails, rolled back),
// plus --config, --backend NAME (a postgres backend), -D.
// Exit: 0 up to date; 64 usage; 65 bad schema directory or file name; 70 a migration failed
// (it is rolled back, earlier ones stay; the server's error is printed); 75 database
// unreachable; 78 configuration.
int runDbMigrate(CommandContext& context);

inline constexpr Command DbMigrateCommand{
    "db migrate", "[--schema-dir DIR] [--timeout 10m] [--lock-timeout 10s] " POSTERN_CTL_COMMON,
    "apply the schema/postgres migrations not yet recorded in schema_migrations", &runDbMigrate};

}  // namespace postern::ctl
