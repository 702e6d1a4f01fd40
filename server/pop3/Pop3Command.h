// POP3 command line parser: RFC 1939 (commands), RFC 2449 (CAPA, 255-octet command
// limit), RFC 2595 (STLS), RFC 5034 (AUTH). Pure: a line in, a command or an error out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::pop3 {

enum class Pop3Verb { User, Pass, Auth, Capa, Stls, Stat, List, Retr, Dele, Noop, Rset, Quit, Top, Uidl };

enum class Pop3ParseError {
    None,
    LineTooLong,      // RFC 2449 4: a command line is at most 255 octets with its CRLF
    Empty,            // nothing (or only a space) on the line
    BadCharacter,     // NUL, CR, LF or another control character in the line
    UnknownCommand,   // not a verb we implement (APOP included)
    MissingArgument,  // USER/PASS/RETR/DELE/TOP/AUTH without its argument(s)
    TooManyArguments, // arguments to a command that takes none, or extra ones
    BadNumber,        // message number not 1..2^32-1 in plain decimal, or TOP lines not 0..
    BadSyntax,        // empty argument (two spaces, trailing space)
};

// Longest line without its CRLF (RFC 2449 4: 255 octets including CRLF).
constexpr std::size_t MaxCommandLine = 253;

struct Pop3Command {
    Pop3Verb verb = Pop3Verb::Noop;
    std::string argument;                  // USER name, PASS password (rest of line), AUTH mechanism ("" for a bare AUTH)
    std::optional<std::string> initialResponse;  // AUTH mech <initial-response> (RFC 5034 4)
    std::optional<std::uint32_t> message;  // LIST/UIDL [n], RETR/DELE/TOP n: 1-based
    std::uint32_t lines = 0;               // TOP n <lines>
};

struct Pop3ParseResult {
    Pop3ParseError error = Pop3ParseError::None;
    Pop3Command command;  // valid only when error == None
};

// `line` without its CRLF. Verbs are case-insensitive (RFC 1939 3); arguments are
// separated by exactly one space (RFC 2449 4), except PASS whose argument is the rest
// of the line and may contain spaces (RFC 1939 7).
Pop3ParseResult parsePop3Command(std::string_view line);

// Short client-facing text for an error ("-ERR " + text).
const char* describe(Pop3ParseError error);

}  // namespace postern::pop3
