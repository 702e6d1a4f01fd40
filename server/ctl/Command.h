// posternctl's command table entry: each subcommand is one row (name, usage, summary, run),
// so later commands (user add, db migrate, queue ...) slot in without touching the dispatcher.
#pragma once

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace postern::ctl {

// Exit codes from sysexits(3), so scripts can tell a typo from a failure.
enum ExitCode : int {
    ExitOk = 0,
    ExitFailure = 1,
    ExitUsage = 64,
    ExitDataError = 65,    // malformed address, empty or mismatched password
    ExitNoUser = 67,       // no such user / alias
    ExitNoHost = 68,       // unknown domain
    ExitUnavailable = 69,  // a plugin could not be loaded
    ExitSoftware = 70,
    ExitCantCreate = 73,   // already exists (user, alias, domain)
    ExitIoError = 74,
    ExitTempFail = 75,     // the database / backend cannot answer now
    ExitNoPerm = 77,       // auth test: wrong password, unknown or disabled user
    ExitConfig = 78,       // bad configuration, no suitable backend
};

struct CommandContext {
    std::vector<std::string> args;  // arguments after the command words
    std::istream& in;
    std::ostream& out;
    std::ostream& err;
};

struct Command {
    std::string_view name;     // one or more words: "hash-password", later "user add"
    std::string_view usage;    // arguments after the name
    std::string_view summary;  // one line for --help
    int (*run)(CommandContext& context);
};

}  // namespace postern::ctl
