// posternctl user release|logins: compromised-account holds and the per-account login log
// (abuse/AccountSecurity; tables of schema/postgres/004_account_security.sql).
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// user release USER: clears the account's flag and its detection counters (so the next
// flush does not flag it again at once); its held mail is then sent within one
// delivery.scan_interval (and new MAIL is accepted within one account_security.flush_interval).
// In a cluster (cluster.conninfo) through the shared PostgreSQL; on a single node by a
// request file in <server.queue_dir>/account-release/ that posternd applies at its next flush.
// Exit: 0 released (cluster: also when the account was not held; says so); 64 usage;
// 65 malformed user; 74 request file not written; 75 database unreachable; 78 configuration
// or schema not migrated.
int runUserRelease(CommandContext& context);
// user logins USER [--limit N] [--json]: newest first (default 20 entries). In a cluster from
// PostgreSQL; on a single node from posternd's state file <server.queue_dir>/account-security.state
// (as of its last flush).
// Exit: 0; 64 usage; 65 bad --limit or a damaged state file; 74 state file unreadable;
// 75 database unreachable; 78 configuration or schema not migrated.
int runUserLogins(CommandContext& context);

inline constexpr Command UserReleaseCommand{
    "user release", "USER " POSTERN_CTL_COMMON,
    "lift a compromised-account hold: its queued mail is sent, new mail accepted", &runUserRelease};
inline constexpr Command UserLoginsCommand{
    "user logins", "USER [--limit N] [--json] " POSTERN_CTL_COMMON,
    "the login log of USER: time, IP, protocol, mechanism, TLS, result (newest first)", &runUserLogins};

}  // namespace postern::ctl
