// posternctl user app-password add|list|revoke and user require-app-password: per-account
// app passwords in the configured backend (PostgreSQL schema 003, passwd-file extra fields;
// LDAP has none). Same backend choice and options as the user commands (UserCommands.h).
// Exit: 0 done; 64 usage; 65 bad value; 67 no such user or app password; 75 database
// unreachable; 78 configuration (backend without app passwords, schema missing).
#pragma once

#include "Command.h"
#include "UserCommands.h"  // POSTERN_CTL_COMMON

namespace postern::ctl {

int runAppPasswordAdd(CommandContext& context);
int runAppPasswordList(CommandContext& context);
int runAppPasswordRevoke(CommandContext& context);
int runRequireAppPassword(CommandContext& context);

inline constexpr Command AppPasswordAddCommand{
    "user app-password add",
    "ADDRESS --scope smtp|pop3|all [--expires DURATION] [--networks CIDR,...] [--label LABEL] " POSTERN_CTL_COMMON,
    "create an app password for mail clients; it is printed once (only its hash is stored)", &runAppPasswordAdd};
inline constexpr Command AppPasswordListCommand{
    "user app-password list", "ADDRESS [--json] " POSTERN_CTL_COMMON,
    "list an account's app passwords: id, status, scope, expiry, networks, last use (never a hash)",
    &runAppPasswordList};
inline constexpr Command AppPasswordRevokeCommand{"user app-password revoke", "ADDRESS ID " POSTERN_CTL_COMMON,
                                                  "revoke one app password", &runAppPasswordRevoke};
inline constexpr Command RequireAppPasswordCommand{
    "user require-app-password", "ADDRESS on|off " POSTERN_CTL_COMMON,
    "on: SMTP AUTH and POP3 refuse the main password, only app passwords log in", &runRequireAppPassword};

}  // namespace postern::ctl
