#include "pop3/Pop3Command.h"

#include <array>
#include <cctype>
#include <utility>
#include <vector>

namespace postern::pop3 {

namespace {

enum class Args { None, One, RestOfLine, OptionalNumber, Number, NumberAndLines, Auth };

struct VerbInfo {
    std::string_view name;
    Pop3Verb verb;
    Args args;
};

// The command table: name, verb and argument shape.
constexpr std::array<VerbInfo, 14> Verbs{{
    {"USER", Pop3Verb::User, Args::One},
    {"PASS", Pop3Verb::Pass, Args::RestOfLine},
    {"AUTH", Pop3Verb::Auth, Args::Auth},
    {"CAPA", Pop3Verb::Capa, Args::None},
    {"STLS", Pop3Verb::Stls, Args::None},
    {"STAT", Pop3Verb::Stat, Args::None},
    {"LIST", Pop3Verb::List, Args::OptionalNumber},
    {"RETR", Pop3Verb::Retr, Args::Number},
    {"DELE", Pop3Verb::Dele, Args::Number},
    {"NOOP", Pop3Verb::Noop, Args::None},
    {"RSET", Pop3Verb::Rset, Args::None},
    {"QUIT", Pop3Verb::Quit, Args::None},
    {"TOP", Pop3Verb::Top, Args::NumberAndLines},
    {"UIDL", Pop3Verb::Uidl, Args::OptionalNumber},
}};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(a[i])) != b[i]) return false;
    return true;
}

// Plain decimal, no sign, no spaces; fits 32 bits (more messages than that cannot exist).
std::optional<std::uint32_t> parseDecimal(std::string_view s) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v > 0xffffffffu) return std::nullopt;
    return static_cast<std::uint32_t>(v);
}

Pop3ParseResult error(Pop3ParseError e) { return {e, {}}; }

}  // namespace

Pop3ParseResult parsePop3Command(std::string_view line) {
    if (line.size() > MaxCommandLine) return error(Pop3ParseError::LineTooLong);
    for (char c : line) {
        // Control characters have no place in a command; TAB is not a separator either.
        unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) return error(Pop3ParseError::BadCharacter);
    }
    auto sp = line.find(' ');
    std::string_view name = line.substr(0, sp);
    if (name.empty()) return error(Pop3ParseError::Empty);
    const VerbInfo* info = nullptr;
    for (const auto& v : Verbs)
        if (iequals(name, v.name)) info = &v;
    if (!info) return error(Pop3ParseError::UnknownCommand);

    Pop3ParseResult r;
    r.command.verb = info->verb;
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    bool hasRest = sp != std::string_view::npos;

    if (info->args == Args::RestOfLine) {
        // RFC 1939 7: "a POP3 server may treat spaces in the argument as part of the
        // password" -- passwords with spaces exist, so PASS takes everything after "PASS ".
        if (rest.empty()) return error(Pop3ParseError::MissingArgument);
        r.command.argument = rest;
        return r;
    }

    std::vector<std::string_view> args;
    if (hasRest) {
        // RFC 2449 4: keywords and arguments are separated by a single SPACE.
        std::size_t start = 0;
        for (;;) {
            auto p = rest.find(' ', start);
            std::string_view a = rest.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start);
            if (a.empty()) return error(Pop3ParseError::BadSyntax);
            args.push_back(a);
            if (p == std::string_view::npos) break;
            start = p + 1;
        }
    }

    auto message = [&](std::string_view s) -> bool {
        auto n = parseDecimal(s);
        if (!n || *n == 0) return false;  // RFC 1939 5: message numbers start at 1
        r.command.message = *n;
        return true;
    };

    switch (info->args) {
    case Args::None:
        if (!args.empty()) return error(Pop3ParseError::TooManyArguments);
        break;
    case Args::One:
        if (args.empty()) return error(Pop3ParseError::MissingArgument);
        if (args.size() > 1) return error(Pop3ParseError::TooManyArguments);
        r.command.argument = args[0];
        break;
    case Args::OptionalNumber:
        if (args.size() > 1) return error(Pop3ParseError::TooManyArguments);
        if (args.size() == 1 && !message(args[0])) return error(Pop3ParseError::BadNumber);
        break;
    case Args::Number:
        if (args.empty()) return error(Pop3ParseError::MissingArgument);
        if (args.size() > 1) return error(Pop3ParseError::TooManyArguments);
        if (!message(args[0])) return error(Pop3ParseError::BadNumber);
        break;
    case Args::NumberAndLines: {
        // RFC 1939 7: TOP msg n, both required; n (lines) may be 0.
        if (args.size() < 2) return error(Pop3ParseError::MissingArgument);
        if (args.size() > 2) return error(Pop3ParseError::TooManyArguments);
        if (!message(args[0])) return error(Pop3ParseError::BadNumber);
        auto n = parseDecimal(args[1]);
        if (!n) return error(Pop3ParseError::BadNumber);
        r.command.lines = *n;
        break;
    }
    case Args::Auth:
        // RFC 5034 4: AUTH mechanism [initial-response]. A bare AUTH (the older discovery
        // Outlook uses, as Dovecot answers it) has an empty argument: list the mechanisms.
        if (args.size() > 2) return error(Pop3ParseError::TooManyArguments);
        if (!args.empty()) r.command.argument = args[0];
        if (args.size() == 2) r.command.initialResponse = std::string(args[1]);
        break;
    case Args::RestOfLine:
        break;
    }
    return r;
}

const char* describe(Pop3ParseError e) {
    switch (e) {
    case Pop3ParseError::None: return "ok";
    case Pop3ParseError::LineTooLong: return "Command line too long";
    case Pop3ParseError::Empty: return "Empty command";
    case Pop3ParseError::BadCharacter: return "Invalid character in command";
    case Pop3ParseError::UnknownCommand: return "Unknown command";
    case Pop3ParseError::MissingArgument: return "Missing argument";
    case Pop3ParseError::TooManyArguments: return "Too many arguments";
    case Pop3ParseError::BadNumber: return "Invalid message number";
    case Pop3ParseError::BadSyntax: return "Syntax error";
    }
    return "Syntax error";
}

}  // namespace postern::pop3
