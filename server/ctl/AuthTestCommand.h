// posternctl auth test USER: asks the configured backend chain exactly as posternd would
// (same plugins, same AuthFacade) and prints the outcome and the backend that decided.
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// Options: --service smtp|pop3 (default smtp), --verbose (the auth log line on stderr),
// -c/--config, -D. The password is read once from the terminal (no echo) or stdin. No cache is
// used (posternctl is not the daemon), so the backends are always asked.
// Prints "result=ok backend=NAME user=... mailbox=... senders=..." or "result=<word> backend=NAME".
// Exit: 0 ok; 77 wrong password, unknown or disabled user; 75 temporary failure; 69 a
// plugin could not be loaded; 78 configuration; 64 usage; 65 no password.
int runAuthTest(CommandContext& context);

inline constexpr Command AuthTestCommand{
    "auth test", "USER [--service smtp|pop3] [--verbose] [-c FILE] [-D key=value]",
    "check a login against the configured backend chain as posternd would", &runAuthTest};

}  // namespace postern::ctl
