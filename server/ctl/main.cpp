// posternctl: the admin tool. One table of subcommands; "posternctl --help" lists them.
#include "Command.h"
#include "AuthTestCommand.h"
#include "DbCommands.h"
#include "DirectoryCommands.h"
#include "GrantCommands.h"
#include "HashPasswordCommand.h"
#include "QueueCommand.h"
#include "UserCommands.h"

#include <array>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using postern::ctl::Command;

// Add new commands here (multi-word names such as "user add" are matched word by word).
constexpr std::array<Command, 26> Commands{{
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
}};

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
    out << "usage: posternctl <command> [options]\n\ncommands:\n";
    for (const auto& c : Commands) {
        out << "  " << c.name << " " << c.usage << "\n      " << c.summary << "\n";
    }
    out << "\n'posternctl <command> --help' shows one command's usage.\n";
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty()) {
        printHelp(std::cerr);
        return postern::ctl::ExitUsage;
    }
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        printHelp(std::cout);
        return postern::ctl::ExitOk;
    }
    if (args[0] == "--version") {
        std::cout << "posternctl 0.1.0\n";
        return postern::ctl::ExitOk;
    }

    // Longest match wins, so "user add" can sit next to "user".
    const Command* found = nullptr;
    std::size_t consumed = 0;
    for (const auto& c : Commands) {
        auto w = words(c.name);
        if (w.size() > consumed && w.size() <= args.size() &&
            std::equal(w.begin(), w.end(), args.begin())) {
            found = &c;
            consumed = w.size();
        }
    }
    if (found == nullptr) {
        std::cerr << "posternctl: unknown command '" << args[0] << "' (see posternctl --help)\n";
        return postern::ctl::ExitUsage;
    }
    std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(consumed), args.end());
    for (const auto& a : rest) {
        if (a == "--help" || a == "-h") {
            std::cout << "usage: posternctl " << found->name << " " << found->usage << "\n"
                      << found->summary << "\n";
            return postern::ctl::ExitOk;
        }
    }
    postern::ctl::CommandContext context{std::move(rest), std::cin, std::cout, std::cerr};
    try {
        return found->run(context);
    } catch (const std::exception& e) {
        std::cerr << "posternctl: " << e.what() << "\n";
        return postern::ctl::ExitSoftware;
    }
}
