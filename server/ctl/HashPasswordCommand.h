// posternctl hash-password: prints a "{SCHEME}hash" for a passwd-file or the users table.
#pragma once

#include "Command.h"

namespace postern::ctl {

// Options: --scheme ARGON2ID|BCRYPT|SHA512-CRYPT (default ARGON2ID). The password comes from
// readNewPassword(). Exit: 0 printed; 64 bad arguments; 65 no/empty/mismatched password;
// 70 hashing failed.
int runHashPassword(CommandContext& context);

inline constexpr Command HashPasswordCommand{
    "hash-password", "[--scheme ARGON2ID|BCRYPT|SHA512-CRYPT]",
    "read a password (no echo, or first line of stdin) and print its {SCHEME}hash", &runHashPassword};

}  // namespace postern::ctl
