// posternctl user add|passwd|disable|enable|delete|list|show: accounts in the configured
// backend, through its plugin (UserStore.h): PostgreSQL with the backend's write queries, a
// passwd-file with the plugin's format code. A read-only backend (LDAP) is refused (78).
#pragma once

#include "Command.h"

namespace postern::ctl {

// Common options: -c/--config FILE (default etc/postern.properties in the work tree,
// /etc/postern/postern.properties installed; see Layout.h), --backend NAME (default: the
// first postgres backend, else the first passwd-file backend; any backend by name), -D key=value.
// Passwords come from readNewPassword() (no-echo prompt, or the first line of stdin), never
// from argv; new hashes use auth.default_scheme.
// Exit: 0 done; 64 usage; 65 malformed address / bad password input / refused value;
// 67 no such user; 68 unknown domain; 73 user exists; 74 file error; 75 database unreachable;
// 78 configuration (no suitable backend, bad settings, schema missing).
int runUserAdd(CommandContext& context);
int runUserPasswd(CommandContext& context);
int runUserDisable(CommandContext& context);
int runUserEnable(CommandContext& context);
int runUserDelete(CommandContext& context);
int runUserList(CommandContext& context);
int runUserShow(CommandContext& context);

#define POSTERN_CTL_COMMON "[-c FILE] [--backend NAME] [-D key=value]"

inline constexpr Command UserAddCommand{
    "user add", "ADDRESS [--mailbox PATH] [--quota SIZE] [--sender ADDRESS]... [--disabled] " POSTERN_CTL_COMMON,
    "create an account; the password is read from the terminal (no echo) or stdin", &runUserAdd};
inline constexpr Command UserPasswdCommand{"user passwd", "ADDRESS " POSTERN_CTL_COMMON,
                                           "set a new password (terminal or stdin)", &runUserPasswd};
inline constexpr Command UserDisableCommand{"user disable", "ADDRESS " POSTERN_CTL_COMMON,
                                            "refuse logins and mail for the account", &runUserDisable};
inline constexpr Command UserEnableCommand{"user enable", "ADDRESS " POSTERN_CTL_COMMON,
                                           "allow logins and mail again", &runUserEnable};
inline constexpr Command UserDeleteCommand{"user delete", "ADDRESS " POSTERN_CTL_COMMON,
                                           "delete the account (its Maildir stays on disk)", &runUserDelete};
inline constexpr Command UserListCommand{"user list", "[DOMAIN] [--json] " POSTERN_CTL_COMMON,
                                         "list accounts: address, enabled|disabled, mailbox", &runUserList};
inline constexpr Command UserShowCommand{"user show", "ADDRESS [--json] " POSTERN_CTL_COMMON,
                                         "show one account (never its hash, only the scheme)", &runUserShow};

}  // namespace postern::ctl
