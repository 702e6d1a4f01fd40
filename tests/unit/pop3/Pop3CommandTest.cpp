#include "pop3/Pop3Command.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

using namespace postern::pop3;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(pop3_command)

struct Case {
    std::string line;
    Pop3ParseError error;
    Pop3Verb verb = Pop3Verb::Noop;
    std::string argument = "";
    std::optional<std::uint32_t> message = std::nullopt;
    std::uint32_t lines = 0;
    std::optional<std::string> initial = std::nullopt;
};
std::ostream& operator<<(std::ostream& o, const Case& c) { return o << '"' << c.line.substr(0, 40) << '"'; }

using E = Pop3ParseError;
using V = Pop3Verb;

const Case cases[] = {
    // verbs, case-insensitive (RFC 1939 3)
    {"CAPA", E::None, V::Capa},
    {"capa", E::None, V::Capa},
    {"StLs", E::None, V::Stls},
    {"STAT", E::None, V::Stat},
    {"NOOP", E::None, V::Noop},
    {"RSET", E::None, V::Rset},
    {"QUIT", E::None, V::Quit},
    {"QUIT now", E::TooManyArguments},
    {"QUIT ", E::BadSyntax},
    {"APOP bob 1234", E::UnknownCommand},
    {"XYZZY", E::UnknownCommand},
    {"QUITX", E::UnknownCommand},
    {"", E::Empty},
    {" USER bob", E::Empty},
    {"USER\tbob", E::BadCharacter},
    {std::string("USER b\0b", 8), E::BadCharacter},
    // USER / PASS (RFC 1939 7)
    {"USER bob", E::None, V::User, "bob"},
    {"user bob@example.org", E::None, V::User, "bob@example.org"},
    {"USER", E::MissingArgument},
    {"USER bob smith", E::TooManyArguments},
    {"USER  bob", E::BadSyntax},
    {"PASS secret", E::None, V::Pass, "secret"},
    {"PASS with  two spaces ", E::None, V::Pass, "with  two spaces "},
    {"PASS  leading", E::None, V::Pass, " leading"},
    {"PASS", E::MissingArgument},
    {"PASS ", E::MissingArgument},
    // message numbers: 1..N, plain decimal (RFC 1939 5)
    {"LIST", E::None, V::List},
    {"LIST 1", E::None, V::List, "", 1u},
    {"LIST 007", E::None, V::List, "", 7u},
    {"LIST 0", E::BadNumber},
    {"LIST -1", E::BadNumber},
    {"LIST +1", E::BadNumber},
    {"LIST 1x", E::BadNumber},
    {"LIST 4294967295", E::None, V::List, "", 4294967295u},
    {"LIST 4294967296", E::BadNumber},
    {"LIST 99999999999999999999", E::BadNumber},
    {"LIST 1 2", E::TooManyArguments},
    {"UIDL", E::None, V::Uidl},
    {"UIDL 3", E::None, V::Uidl, "", 3u},
    {"RETR 2", E::None, V::Retr, "", 2u},
    {"RETR", E::MissingArgument},
    {"RETR two", E::BadNumber},
    {"RETR 1 2", E::TooManyArguments},
    {"DELE 1", E::None, V::Dele, "", 1u},
    {"DELE", E::MissingArgument},
    {"DELE 0", E::BadNumber},
    // TOP msg n (RFC 1939 7): n may be 0
    {"TOP 1 10", E::None, V::Top, "", 1u, 10u},
    {"TOP 1 0", E::None, V::Top, "", 1u, 0u},
    {"top 2 5", E::None, V::Top, "", 2u, 5u},
    {"TOP 1", E::MissingArgument},
    {"TOP", E::MissingArgument},
    {"TOP 0 1", E::BadNumber},
    {"TOP 1 -1", E::BadNumber},
    {"TOP 1 2 3", E::TooManyArguments},
    // AUTH mech [initial-response] (RFC 5034 4)
    {"AUTH PLAIN", E::None, V::Auth, "PLAIN"},
    {"AUTH PLAIN AGJvYgBzZWNyZXQ=", E::None, V::Auth, "PLAIN", std::nullopt, 0, "AGJvYgBzZWNyZXQ="},
    {"AUTH PLAIN =", E::None, V::Auth, "PLAIN", std::nullopt, 0, "="},
    {"auth login", E::None, V::Auth, "login"},
    {"AUTH", E::None, V::Auth, ""},  // a bare AUTH: the mechanism list (Outlook's discovery)
    {"AUTH PLAIN a b", E::TooManyArguments},
    // RFC 2449 4: 255 octets including CRLF
    {"PASS " + std::string(248, 'x'), E::None, V::Pass, std::string(248, 'x')},
    {"PASS " + std::string(249, 'x'), E::LineTooLong},
};

BOOST_DATA_TEST_CASE(parse_table, bdata::make(cases), c) {
    auto r = parsePop3Command(c.line);
    BOOST_TEST((r.error == c.error), "error " << static_cast<int>(r.error) << " expected " << static_cast<int>(c.error));
    if (c.error != E::None) return;
    BOOST_TEST((r.command.verb == c.verb));
    BOOST_TEST(r.command.argument == c.argument);
    BOOST_TEST((r.command.message == c.message));
    BOOST_TEST(r.command.lines == c.lines);
    BOOST_TEST((r.command.initialResponse == c.initial));
}

BOOST_AUTO_TEST_CASE(every_error_has_a_text) {
    for (auto e : {E::LineTooLong, E::Empty, E::BadCharacter, E::UnknownCommand, E::MissingArgument,
                   E::TooManyArguments, E::BadNumber, E::BadSyntax})
        BOOST_TEST(std::string(describe(e)).size() > 3u);
}

BOOST_AUTO_TEST_SUITE_END()
