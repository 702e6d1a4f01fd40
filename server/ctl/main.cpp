// posternctl: the admin tool. One table of subcommands; "posternctl help" lists them.
//
// Conventions (as doveadm, postconf, git): global options may come before the command or
// after it; "posternctl help [COMMAND]" and "COMMAND --help" print usage; "--version" prints
// the build's version; exit codes are sysexits(3) (Command.h); list and show commands take
// --json for scripts.
#include "Command.h"
#include "AppPasswordCommands.h"
#include "AuthTestCommand.h"
#include "DbCommands.h"
#include "DirectoryCommands.h"
#include "DkimCommands.h"
#include "AccountSecurityCommands.h"
#include "GrantCommands.h"
#include "HashPasswordCommand.h"
#include "MtaStsCommands.h"
#include "Layout.h"
#include "QueueCommand.h"
#include "UserCommands.h"

#include "postern_build_version.h"

#include <algorithm>
#include <array>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using postern::ctl::Command;
namespace ctl = postern::ctl;

// Add new commands here (multi-word names such as "user add" are matched word by word).
constexpr std::array<Command, 36> Commands{{
    postern::ctl::HashPasswordCommand,
    postern::ctl::QueueListCommand,
    postern::ctl::QueueShowCommand,
    postern::ctl::QueueFlushCommand,
    postern::ctl::QueueDeleteCommand,
    postern::ctl::QueueHoldCommand,
    postern::ctl::QueueReleaseCommand,
    postern::ctl::DbMigrateCommand,
    postern::ctl::UserAddCommand,
    postern::ctl::UserPasswdCommand,
    postern::ctl::UserDisableCommand,
    postern::ctl::UserEnableCommand,
    postern::ctl::UserDeleteCommand,
    postern::ctl::UserListCommand,
    postern::ctl::UserShowCommand,
    postern::ctl::AppPasswordAddCommand, postern::ctl::AppPasswordListCommand,
    postern::ctl::AppPasswordRevokeCommand, postern::ctl::RequireAppPasswordCommand,
    postern::ctl::AliasAddCommand,
    postern::ctl::AliasDeleteCommand,
    postern::ctl::AliasListCommand,
    postern::ctl::DomainAddCommand,
    postern::ctl::DomainDeleteCommand,
    postern::ctl::DomainListCommand,
    postern::ctl::AuthTestCommand,
    postern::ctl::GrantListCommand,
    postern::ctl::GrantAddCommand,
    postern::ctl::GrantRevokeCommand,
    postern::ctl::GrantFlushCommand,
    postern::ctl::DkimKeygenCommand, postern::ctl::DkimListCommand, postern::ctl::DkimShowCommand,
    postern::ctl::UserReleaseCommand,
    postern::ctl::UserLoginsCommand,
    postern::ctl::MtaStsShowCommand,
}};

// The exit codes every command may return (also in posternctl(1)).
constexpr const char* ExitCodes =
    "exit status (sysexits.h):\n"
    "   0  success\n"
    "  64  EX_USAGE        bad command line: unknown command or option, wrong arguments\n"
    "  65  EX_DATAERR      malformed address, domain, size or duration; no or mismatched password\n"
    "  67  EX_NOUSER       no such user, alias, grant or queued message\n"
    "  68  EX_NOHOST       unknown domain\n"
    "  69  EX_UNAVAILABLE  an auth plugin could not be loaded\n"
    "  70  EX_SOFTWARE     internal error, or a migration failed\n"
    "  73  EX_CANTCREAT    already exists (user, alias, domain)\n"
    "  74  EX_IOERR        file or queue I/O error\n"
    "  75  EX_TEMPFAIL     the database or backend cannot answer now: retry\n"
    "  77  EX_NOPERM       auth test: wrong password, unknown or disabled user\n"
    "  78  EX_CONFIG       configuration: file missing or invalid, no suitable backend, schema missing\n";

std::string globalOptionsText() {
    return "global options (before or after the command):\n"
           "  -c, --config FILE   configuration file (default: " +
           ctl::layout().configFile +
           ")\n"
           "  --backend NAME      the auth backend to administer (default: the first suitable one)\n"
           "  -D key=value        override a configuration key, as posternd -D does\n"
           "  --json              list and show commands: one JSON document on stdout\n"
           "  -h, --help          usage (of a command: posternctl help COMMAND)\n"
           "  --version           print the version and exit\n";
}

std::vector<std::string> words(std::string_view name) {
    std::vector<std::string> out;
    std::istringstream in{std::string(name)};
    std::string w;
    while (in >> w) {
        out.push_back(w);
    }
    return out;
}

void printHelp(std::ostream& out) {
    out << "usage: posternctl [global options] COMMAND [arguments] [global options]\n"
           "       posternctl help [COMMAND]\n"
           "       posternctl --version\n\n"
        << globalOptionsText() << "\ncommands:\n";
    for (const auto& c : Commands) {
        out << "  " << c.name << " " << c.usage << "\n      " << c.summary << "\n";
    }
    out << "\n" << ExitCodes << "\n'posternctl help COMMAND' or 'posternctl COMMAND --help' shows one command.\n";
}

void printCommandHelp(std::ostream& out, const Command& c) {
    out << "usage: posternctl " << c.name << " " << c.usage << "\n" << c.summary << "\n\n"
        << globalOptionsText() << "\n" << ExitCodes;
}

// Longest match of the command table against the start of args; nullptr if none.
const Command* findCommand(const std::vector<std::string>& args, std::size_t& consumed) {
    const Command* found = nullptr;
    consumed = 0;
    for (const auto& c : Commands) {
        auto w = words(c.name);
        if (w.size() > consumed && w.size() <= args.size() && std::equal(w.begin(), w.end(), args.begin())) {
            found = &c;
            consumed = w.size();
        }
    }
    return found;
}

// Commands whose first word is `group` ("user" -> user add, user passwd, ...).
std::vector<const Command*> commandsOf(const std::string& group) {
    std::vector<const Command*> out;
    for (const auto& c : Commands) {
        if (words(c.name).front() == group) {
            out.push_back(&c);
        }
    }
    return out;
}

// "posternctl user": names the subcommands instead of a bare "unknown command".
int unknownCommand(const std::vector<std::string>& args, bool help) {
    auto group = args.empty() ? std::vector<const Command*>{} : commandsOf(args[0]);
    std::ostream& out = help ? std::cout : std::cerr;
    if (!group.empty()) {
        if (!help && args.size() > 1 && !args[1].empty() && args[1][0] != '-') {
            out << "posternctl: unknown command '" << args[0] << " " << args[1] << "'; the " << args[0]
                << " commands are:\n";
        } else if (!help) {
            out << "posternctl: '" << args[0] << "' needs a subcommand:\n";
        }
        for (const auto* c : group) {
            out << "  posternctl " << c->name << " " << c->usage << "\n      " << c->summary << "\n";
        }
        return help ? ctl::ExitOk : ctl::ExitUsage;
    }
    std::cerr << "posternctl: unknown command '" << (args.empty() ? "" : args[0]) << "' (see posternctl help)\n";
    return ctl::ExitUsage;
}

bool isHelpFlag(const std::string& a) {
    return a == "--help" || a == "-h";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);

    // Global options before the command word(s): taken out here and handed to the command in
    // front of its own arguments, where parseOptions() reads them as if given after it.
    std::vector<std::string> global;
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.empty() || a[0] != '-') {
            break;
        }
        if (isHelpFlag(a)) {
            printHelp(std::cout);
            return ctl::ExitOk;
        }
        if (a == "--version" || a == "-V") {
            std::cout << "posternctl " << POSTERN_BUILD_VERSION << "\n";
            return ctl::ExitOk;
        }
        if (a == "-c" || a == "--config" || a == "--backend" || a == "-D") {
            if (i + 1 >= args.size()) {
                std::cerr << "posternctl: " << a << " needs a value (see posternctl help)\n";
                return ctl::ExitUsage;
            }
            global.push_back(a);
            global.push_back(args[++i]);
        } else if (a.rfind("--config=", 0) == 0 || a.rfind("--backend=", 0) == 0 || a == "--json") {
            global.push_back(a);
        } else {
            std::cerr << "posternctl: unknown global option " << a << " (see posternctl help)\n";
            return ctl::ExitUsage;
        }
    }
    args.erase(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i));

    if (args.empty()) {
        printHelp(std::cerr);
        return ctl::ExitUsage;
    }
    if (args[0] == "help") {
        std::vector<std::string> topic(args.begin() + 1, args.end());
        if (topic.empty()) {
            printHelp(std::cout);
            return ctl::ExitOk;
        }
        if (topic.size() == 1 && topic[0] == "--commands") {  // for bash completion
            for (const auto& c : Commands) {
                std::cout << c.name << "\n";
            }
            return ctl::ExitOk;
        }
        std::size_t consumed = 0;
        const Command* c = findCommand(topic, consumed);
        if (c == nullptr && topic.size() == 1) {
            return unknownCommand(topic, true);  // "help user": the user commands
        }
        if (c == nullptr || consumed != topic.size()) {
            std::cerr << "posternctl: no command '" << topic[0] << (topic.size() > 1 ? " " + topic[1] : "")
                      << "' (see posternctl help)\n";
            return ctl::ExitUsage;
        }
        printCommandHelp(std::cout, *c);
        return ctl::ExitOk;
    }

    std::size_t consumed = 0;
    const Command* found = findCommand(args, consumed);
    if (found == nullptr) {
        bool help = std::any_of(args.begin(), args.end(), isHelpFlag);
        return unknownCommand(args, help && args.size() > 1);
    }
    std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(consumed), args.end());
    for (std::size_t k = 0; k < rest.size(); ++k) {
        if (rest[k] == "--") {
            break;
        }
        if (isHelpFlag(rest[k])) {
            printCommandHelp(std::cout, *found);
            return ctl::ExitOk;
        }
        if (rest[k] == "--version") {  // a global option, after the command too (not -V: an option's value may be that)
            std::cout << "posternctl " << POSTERN_BUILD_VERSION << "\n";
            return ctl::ExitOk;
        }
    }
    rest.insert(rest.begin(), global.begin(), global.end());
    ctl::CommandContext context{std::move(rest), std::cin, std::cout, std::cerr};
    try {
        return found->run(context);
    } catch (const std::exception& e) {
        std::cerr << "posternctl: " << e.what() << "\n";
        return ctl::ExitSoftware;
    }
}
