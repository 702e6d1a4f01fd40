// SMTP command parser: verbs, MAIL/RCPT syntax, ESMTP parameters, limits. One row per case.
#include "smtpproto/SmtpCommand.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <limits>
#include <ostream>
#include <string>

using namespace postern::smtp;
namespace bdata = boost::unit_test::data;

namespace {

struct CmdCase {
    std::string line;
    Verb verb;
    CommandError error;
    int code;               // expected errorReply().code (250 when ok)
    std::string enhanced;   // expected enhanced code text
};
std::ostream& operator<<(std::ostream& o, const CmdCase& c) {
    return o << '"' << c.line.substr(0, 60) << (c.line.size() > 60 ? "...\"" : "\"");
}

const CommandError Ok = CommandError::None;

const CmdCase cmdCases[] = {
    // verbs, case-insensitive
    {"HELO client.example", Verb::Helo, Ok, 250, "2.0.0"},
    {"ehlo client.example", Verb::Ehlo, Ok, 250, "2.0.0"},
    {"EhLo [192.0.2.1]", Verb::Ehlo, Ok, 250, "2.0.0"},
    {"EHLO client_with_underscore", Verb::Ehlo, Ok, 250, "2.0.0"},  // lenient like Postfix
    {"EHLO client.example  ", Verb::Ehlo, Ok, 250, "2.0.0"},
    {"EHLO", Verb::Ehlo, CommandError::BadArguments, 501, "5.5.4"},
    {"EHLO ", Verb::Ehlo, CommandError::BadArguments, 501, "5.5.4"},
    {"HELO two words", Verb::Helo, CommandError::BadArguments, 501, "5.5.4"},
    {"DATA", Verb::Data, Ok, 250, "2.0.0"},
    {"data", Verb::Data, Ok, 250, "2.0.0"},
    {"DATA x", Verb::Data, CommandError::BadArguments, 501, "5.5.4"},
    {"RSET", Verb::Rset, Ok, 250, "2.0.0"},
    {"QUIT", Verb::Quit, Ok, 250, "2.0.0"},
    {"QUIT now", Verb::Quit, CommandError::BadArguments, 501, "5.5.4"},
    {"NOOP", Verb::Noop, Ok, 250, "2.0.0"},
    {"NOOP anything at all", Verb::Noop, Ok, 250, "2.0.0"},
    {"VRFY bob", Verb::Vrfy, Ok, 250, "2.0.0"},
    {"VRFY", Verb::Vrfy, CommandError::BadArguments, 501, "5.5.4"},
    {"HELP", Verb::Help, Ok, 250, "2.0.0"},
    {"HELP MAIL", Verb::Help, Ok, 250, "2.0.0"},
    {"STARTTLS", Verb::StartTls, Ok, 250, "2.0.0"},
    {"starttls", Verb::StartTls, Ok, 250, "2.0.0"},
    {"STARTTLS x", Verb::StartTls, CommandError::BadArguments, 501, "5.5.4"},
    {"AUTH PLAIN", Verb::Auth, Ok, 250, "2.0.0"},
    {"AUTH PLAIN AGJvYgBzZWNyZXQ=", Verb::Auth, Ok, 250, "2.0.0"},
    {"AUTH", Verb::Auth, CommandError::BadArguments, 501, "5.5.4"},
    {"AUTH PLAIN a b", Verb::Auth, CommandError::BadArguments, 501, "5.5.4"},
    {"EXPN staff", Verb::Unknown, CommandError::UnknownCommand, 500, "5.5.1"},
    {"FOO", Verb::Unknown, CommandError::UnknownCommand, 500, "5.5.1"},
    {"", Verb::Unknown, CommandError::UnknownCommand, 500, "5.5.1"},
    {"MAILFROM:<a@b.example>", Verb::Unknown, CommandError::UnknownCommand, 500, "5.5.1"},
    {"GET / HTTP/1.1", Verb::Unknown, CommandError::UnknownCommand, 500, "5.5.1"},
    {std::string("NOOP \0x", 7), Verb::Noop, CommandError::BadCharacter, 500, "5.5.2"},
    {"NOOP a\rb", Verb::Noop, CommandError::BadCharacter, 500, "5.5.2"},
    {"NOOP a\nb", Verb::Noop, CommandError::BadCharacter, 500, "5.5.2"},
    // MAIL
    {"MAIL FROM:<a@b.example>", Verb::Mail, Ok, 250, "2.0.0"},
    {"mail from:<a@b.example>", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM: <a@b.example>", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:  <a@b.example>", Verb::Mail, CommandError::BadSenderAddress, 501, "5.1.7"},
    {"MAIL FROM:<>", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:a@b.example", Verb::Mail, CommandError::BadSenderAddress, 501, "5.1.7"},
    {"MAIL FROM:<a@b.example.>", Verb::Mail, CommandError::BadSenderAddress, 501, "5.1.7"},
    {"MAIL TO:<a@b.example>", Verb::Mail, CommandError::Syntax, 501, "5.5.2"},
    {"MAIL", Verb::Mail, CommandError::Syntax, 501, "5.5.2"},
    {"MAIL FROM:<a@b.example>junk", Verb::Mail, CommandError::Syntax, 501, "5.5.2"},
    {"MAIL FROM:<a@b.example> ", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> SIZE=1000", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> size=1000 body=8bitmime", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example>  SIZE=1000   BODY=7BIT", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> SIZE=", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> SIZE", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> SIZE=12a", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> SIZE=-1", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> BODY=BINARYMIME", Verb::Mail, Ok, 250, "2.0.0"},  // RFC 3030 3
    {"MAIL FROM:<a@b.example> BODY=binarymime", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> BODY=", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> AUTH=<>", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> AUTH=bob+40example.com", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> AUTH=bob+4", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> AUTH=bob+zz", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> AUTH=a=b", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    // DSN (RFC 3461): RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT (DsnParamsTest has the details)
    {"MAIL FROM:<a@b.example> RET=FULL", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> ret=hdrs ENVID=abc+2Bdef", Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> RET=FULL RET=HDRS", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> ENVID=a+2", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> NOTIFY=NEVER", Verb::Mail, CommandError::UnknownParam, 555, "5.5.4"},
    {"RCPT TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", Verb::Rcpt, CommandError::BadParamValue, 501, "5.5.4"},
    {"RCPT TO:<a@b.example> ORCPT=a@b", Verb::Rcpt, CommandError::BadParamValue, 501, "5.5.4"},
    {"RCPT TO:<a@b.example> NOTIFY=DELAY NOTIFY=DELAY", Verb::Rcpt, CommandError::BadParamValue, 501, "5.5.4"},
    {"RCPT TO:<a@b.example> RET=FULL", Verb::Rcpt, CommandError::UnknownParam, 555, "5.5.4"},
    {"MAIL FROM:<a@b.example> SMTPUTF8", Verb::Mail, CommandError::UnknownParam, 555, "5.5.4"},
    {"MAIL FROM:<a@b.example> X-FOO", Verb::Mail, CommandError::UnknownParam, 555, "5.5.4"},
    {"MAIL FROM:<a@b.example> -X=1", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<a@b.example> =1", Verb::Mail, CommandError::BadParamValue, 501, "5.5.4"},
    {"MAIL FROM:<j\xC3\xB6rg@b.example>", Verb::Mail, CommandError::BadSenderAddress, 501, "5.1.7"},
    // RCPT
    {"RCPT TO:<a@b.example>", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"rcpt to: <a@b.example>", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<Postmaster>", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<>", Verb::Rcpt, CommandError::BadRecipientAddress, 501, "5.1.3"},
    {"RCPT TO:<a@b.example> NOTIFY=NEVER", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<a@b.example> SIZE=1", Verb::Rcpt, CommandError::UnknownParam, 555, "5.5.4"},
    {"RCPT FROM:<a@b.example>", Verb::Rcpt, CommandError::Syntax, 501, "5.5.2"},
    {"RCPT TO:<\"x@remote.example\"@b.example>", Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<a@b.example.>", Verb::Rcpt, CommandError::BadRecipientAddress, 501, "5.1.3"},
    // RFC 5321 4.5.3.1.4: 512 octets with CRLF
    {"NOOP " + std::string(505, 'x'), Verb::Noop, Ok, 250, "2.0.0"},
    {"NOOP " + std::string(506, 'x'), Verb::Noop, CommandError::LineTooLong, 500, "5.5.2"},
    // RCPT gets +530 (RFC 3461 5: NOTIFY= and ORCPT=): 1042 with CRLF
    {"RCPT TO:<a@b.example>" + std::string(1019, ' '), Verb::Rcpt, Ok, 250, "2.0.0"},
    {"RCPT TO:<a@b.example>" + std::string(1020, ' '), Verb::Rcpt, CommandError::LineTooLong, 500, "5.5.2"},
    // MAIL gets +26 (SIZE) +500 (AUTH=) +110 (RET=, ENVID=): 1146 with CRLF
    {"MAIL FROM:<a@b.example> AUTH=" + std::string(1117, 'x'), Verb::Mail, Ok, 250, "2.0.0"},
    {"MAIL FROM:<a@b.example> AUTH=" + std::string(1118, 'x'), Verb::Mail, CommandError::LineTooLong, 500, "5.5.2"},
    {"AUTH PLAIN " + std::string(12275, 'A'), Verb::Auth, Ok, 250, "2.0.0"},
    {"AUTH PLAIN " + std::string(12276, 'A'), Verb::Auth, CommandError::LineTooLong, 500, "5.5.6"},  // RFC 4954 6
    {std::string(20000, 'x'), Verb::Unknown, CommandError::LineTooLong, 500, "5.5.2"},
    // BDAT (RFC 3030 2): chunk-size [SP LAST]
    {"BDAT 0", Verb::Bdat, Ok, 250, "2.0.0"},
    {"BDAT 0 LAST", Verb::Bdat, Ok, 250, "2.0.0"},
    {"bdat 12 last", Verb::Bdat, Ok, 250, "2.0.0"},
    {"BDAT 18446744073709551615 LAST", Verb::Bdat, Ok, 250, "2.0.0"},
    {"BDAT 1 LAST  ", Verb::Bdat, Ok, 250, "2.0.0"},
    {"BDAT", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT ", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT x", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT -1", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT +1", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT 1x", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT 18446744073709551616", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},  // > UINT64_MAX
    {"BDAT 000000000000000000001", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},  // 21 digits
    {"BDAT 5 FIRST", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT 5 LAST x", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT 5  LAST", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT LAST", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
    {"BDAT 5\tLAST", Verb::Bdat, CommandError::BadArguments, 501, "5.5.4"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_command)

BOOST_AUTO_TEST_CASE(bdat_size_and_last) {
    Command c = parseCommand("BDAT 1234");
    BOOST_TEST(c.ok());
    BOOST_TEST(c.chunkSize == 1234u);
    BOOST_TEST(!c.lastChunk);
    c = parseCommand("BDAT 0 LaSt");
    BOOST_TEST(c.ok());
    BOOST_TEST(c.chunkSize == 0u);
    BOOST_TEST(c.lastChunk);
    c = parseCommand("BDAT 18446744073709551615");
    BOOST_TEST(c.chunkSize == std::numeric_limits<std::uint64_t>::max());
    BOOST_TEST((parseCommand("MAIL FROM:<a@b.example> BODY=BINARYMIME").body == BodyType::BinaryMime));
    BOOST_TEST(c.errorReply().text().empty() == false);
    BOOST_TEST(parseCommand("BDAT x").errorReply().text() == "Syntax: BDAT chunk-size [LAST]");
}

BOOST_DATA_TEST_CASE(parse_command, bdata::make(cmdCases), c) {
    Command cmd = parseCommand(c.line);
    BOOST_TEST(static_cast<int>(cmd.verb) == static_cast<int>(c.verb));
    BOOST_TEST(static_cast<int>(cmd.error) == static_cast<int>(c.error), "detail: " << cmd.detail);
    Reply r = cmd.errorReply();
    BOOST_TEST(r.code == c.code);
    BOOST_TEST(formatEnhanced(r.code, r.enh) == c.enhanced);
    if (cmd.ok() && (cmd.verb == Verb::Mail || cmd.verb == Verb::Rcpt))
        BOOST_TEST(cmd.path.ok);
}

BOOST_AUTO_TEST_CASE(mail_parameters_values) {
    Command c = parseCommand("MAIL FROM:<a@b.example> SIZE=12345 BODY=8BITMIME AUTH=<>");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(c.path.address() == "a@b.example");
    BOOST_TEST(*c.size == 12345u);
    BOOST_TEST((c.body == BodyType::EightBitMime));
    BOOST_TEST(*c.authParam == "<>");

    c = parseCommand("MAIL FROM:<a@b.example>");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(!c.size.has_value());
    BOOST_TEST((c.body == BodyType::Unspecified));
    BOOST_TEST(!c.authParam.has_value());

    c = parseCommand("MAIL FROM:<> BODY=7bit");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(c.path.isNull);
    BOOST_TEST((c.body == BodyType::SevenBit));
}

BOOST_AUTO_TEST_CASE(size_overflow_saturates) {
    constexpr auto max = std::numeric_limits<std::uint64_t>::max();
    Command c = parseCommand("MAIL FROM:<a@b.example> SIZE=18446744073709551615");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(*c.size == max);
    c = parseCommand("MAIL FROM:<a@b.example> SIZE=18446744073709551616");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(*c.size == max);
    c = parseCommand("MAIL FROM:<a@b.example> SIZE=99999999999999999999999999999999999999");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(*c.size == max);
    c = parseCommand("MAIL FROM:<a@b.example> SIZE=0");
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(*c.size == 0u);
}

BOOST_AUTO_TEST_CASE(arguments) {
    Command c = parseCommand("EHLO Client.Example");
    BOOST_TEST(c.argument == "Client.Example");
    c = parseCommand("AUTH login");
    BOOST_TEST(c.authMechanism == "login");
    BOOST_TEST(!c.authInitialResponse.has_value());
    c = parseCommand("AUTH PLAIN =");
    BOOST_TEST(*c.authInitialResponse == "=");
    c = parseCommand("RCPT TO:<\"x@remote.example\"@b.example>");
    BOOST_TEST(c.path.domain == "b.example");
    BOOST_TEST(c.path.localPart == "x@remote.example");
    c = parseCommand("RCPT TO:<@relay.example:u@dest.example>");
    BOOST_TEST(c.path.address() == "u@dest.example");
}

BOOST_AUTO_TEST_CASE(smtputf8_when_enabled) {
    CommandOptions opts;
    opts.smtpUtf8 = true;
    Command c = parseCommand("MAIL FROM:<j\xC3\xB6rg@b.example> SMTPUTF8", opts);
    BOOST_TEST(c.ok());
    BOOST_TEST(c.smtpUtf8);
    c = parseCommand("MAIL FROM:<j\xC3\xB6rg@b.example>", opts);
    BOOST_TEST((c.error == CommandError::NeedsSmtpUtf8));  // RFC 6531 3.5: 553 5.6.7
    BOOST_TEST(c.errorReply().code == 553);
    BOOST_TEST(formatEnhanced(c.errorReply().code, c.errorReply().enh) == "5.6.7");
    c = parseCommand("MAIL FROM:<a@b\xC3\xBC" "cher.example>", opts);  // U-label domain alike
    BOOST_TEST((c.error == CommandError::NeedsSmtpUtf8));
    c = parseCommand("MAIL FROM:<j\xC0\xAFrg@b.example> SMTPUTF8", opts);  // overlong: a syntax error
    BOOST_TEST((c.error == CommandError::BadSenderAddress));
    BOOST_TEST(c.errorReply().code == 501);
    c = parseCommand("MAIL FROM:<a@b.example> SMTPUTF8=yes", opts);
    BOOST_TEST((c.error == CommandError::BadParamValue));
    c = parseCommand("RCPT TO:<j\xC3\xB6rg@b.example>", opts);
    BOOST_TEST(c.ok());
    BOOST_TEST(c.path.hasUtf8);
}

BOOST_AUTO_TEST_CASE(requiretls_parameter) {
    Command c = parseCommand("MAIL FROM:<a@b.example> REQUIRETLS");
    BOOST_TEST(c.ok());
    BOOST_TEST(c.requireTls);
    BOOST_TEST(!parseCommand("MAIL FROM:<a@b.example>").requireTls);
    BOOST_TEST((parseCommand("MAIL FROM:<a@b.example> REQUIRETLS=1").error == CommandError::BadParamValue));
    BOOST_TEST((parseCommand("MAIL FROM:<a@b.example> REQUIRETLS requiretls").error == CommandError::BadParamValue));
    BOOST_TEST((parseCommand("RCPT TO:<a@b.example> REQUIRETLS").error == CommandError::UnknownParam));
}

BOOST_AUTO_TEST_CASE(configurable_line_limit) {
    CommandOptions opts;
    opts.maxLineLength = 100;
    BOOST_TEST(parseCommand("NOOP " + std::string(93, 'x'), opts).ok());
    BOOST_TEST((parseCommand("NOOP " + std::string(94, 'x'), opts).error == CommandError::LineTooLong));
}

BOOST_AUTO_TEST_CASE(reply_texts) {
    BOOST_TEST(parseCommand("FOO").errorReply().format(true) == "500 5.5.1 Command unrecognized\r\n");
    BOOST_TEST(parseCommand("NOOP " + std::string(600, 'x')).errorReply().format(true) ==
               "500 5.5.2 Line too long\r\n");
    BOOST_TEST(parseCommand("EHLO").errorReply().format(true) == "501 5.5.4 Syntax: EHLO hostname\r\n");
    BOOST_TEST(parseCommand("RCPT TO:<a@b.example> X=1").errorReply().format(true) ==
               "555 5.5.4 Unsupported parameter\r\n");
}

BOOST_AUTO_TEST_CASE(verb_names) {
    BOOST_TEST(std::string(verbName(Verb::StartTls)) == "STARTTLS");
    BOOST_TEST(std::string(verbName(Verb::Unknown)) == "UNKNOWN");
}

BOOST_AUTO_TEST_SUITE_END()
