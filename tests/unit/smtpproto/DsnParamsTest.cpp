// xtext (RFC 3461 4) and the DSN parameters of MAIL/RCPT (RFC 3461 4.1-4.4).
#include "smtpproto/DsnParams.h"
#include "smtpproto/SmtpCommand.h"
#include "smtpproto/Xtext.h"

#include <boost/test/unit_test.hpp>

#include <string>

using namespace postern;
using namespace postern::smtp;

BOOST_AUTO_TEST_SUITE(xtext)

BOOST_AUTO_TEST_CASE(decodes_hexchars_and_keeps_xchars) {
    BOOST_TEST(*decodeXtext("abc+2Bdef") == "abc+def");
    BOOST_TEST(*decodeXtext("a+40b") == "a@b");
    BOOST_TEST(*decodeXtext("+3D+20+00x") == std::string("= \0x", 4));
    BOOST_TEST(*decodeXtext("+2b") == "+");  // lower-case hex accepted when reading
    BOOST_TEST(*decodeXtext("") == "");
    BOOST_TEST(*decodeXtext("!~") == "!~");
}

BOOST_AUTO_TEST_CASE(refuses_what_is_not_xtext) {
    for (const char* bad : {"a+", "a+4", "a+4G", "+G0", "a=b", "a b", "a\x7f", "a\x80"})
        BOOST_TEST(!decodeXtext(bad).has_value(), bad);
    BOOST_TEST(!decodeXtext(std::string("a\0b", 3)).has_value());
}

BOOST_AUTO_TEST_CASE(encodes_plus_equals_and_non_printables_upper_case) {
    BOOST_TEST(encodeXtext("abc+def") == "abc+2Bdef");
    BOOST_TEST(encodeXtext("a=b c") == "a+3Db+20c");
    BOOST_TEST(encodeXtext(std::string("\0\xff\r\n", 4)) == "+00+FF+0D+0A");
    BOOST_TEST(encodeXtext("!~") == "!~");
}

BOOST_AUTO_TEST_CASE(round_trip_every_octet) {
    std::string all;
    for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
    std::string enc = encodeXtext(all);
    for (unsigned char c : enc) BOOST_TEST_REQUIRE((c >= 33 && c <= 126 && c != '='));
    BOOST_TEST(*decodeXtext(enc) == all);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dsn_params)

namespace {
Command mail(const std::string& params) { return parseCommand("MAIL FROM:<a@b.example> " + params); }
Command rcpt(const std::string& params) { return parseCommand("RCPT TO:<a@b.example> " + params); }
}  // namespace

BOOST_AUTO_TEST_CASE(mail_ret_and_envid) {
    Command c = mail("RET=HDRS ENVID=abc+2Bdef");
    BOOST_TEST_REQUIRE(c.ok());
    BOOST_TEST((c.dsn.ret == core::DsnRet::Headers));
    BOOST_TEST(c.dsn.envid == "abc+def");
    c = mail("ret=full");
    BOOST_TEST_REQUIRE(c.ok());
    BOOST_TEST((c.dsn.ret == core::DsnRet::Full));
    BOOST_TEST(c.dsn.envid.empty());
    c = parseCommand("MAIL FROM:<a@b.example>");
    BOOST_TEST((c.dsn.ret == core::DsnRet::Unspecified));
}

BOOST_AUTO_TEST_CASE(mail_bad_values_are_501_5_5_4) {
    for (const char* p : {"RET=ALL", "RET", "RET=FULL RET=FULL", "ENVID", "ENVID=a+zz", "ENVID=a ENVID=b",
                          "RET=HDRS ret=hdrs"}) {
        Command c = mail(p);
        BOOST_TEST((c.error == CommandError::BadParamValue), p << ": " << c.detail);
        BOOST_TEST(c.errorReply().format(true) == "501 5.5.4 Bad parameter value\r\n");
    }
    BOOST_TEST(mail("ENVID=" + std::string(100, 'x')).ok());
    BOOST_TEST((mail("ENVID=" + std::string(101, 'x')).error == CommandError::BadParamValue));
}

BOOST_AUTO_TEST_CASE(rcpt_notify_and_orcpt) {
    Command c = rcpt("NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b");
    BOOST_TEST_REQUIRE(c.ok());
    BOOST_TEST(c.rcptDsn.notify == (core::notify::Success | core::notify::Failure));
    BOOST_TEST(c.rcptDsn.orcptType == "rfc822");
    BOOST_TEST(c.rcptDsn.orcpt == "a@b");
    BOOST_TEST(c.rcptDsn.wantsSuccess());
    BOOST_TEST(c.rcptDsn.wantsFailure());
    BOOST_TEST(!c.rcptDsn.wantsDelay());
    c = rcpt("notify=never");
    BOOST_TEST_REQUIRE(c.ok());
    BOOST_TEST(c.rcptDsn.notify == core::notify::Never);
    BOOST_TEST(!c.rcptDsn.wantsFailure());
    BOOST_TEST(!c.rcptDsn.wantsDelay());
    BOOST_TEST(!c.rcptDsn.wantsSuccess());
    c = rcpt("NOTIFY=delay,Success");
    BOOST_TEST_REQUIRE(c.ok());
    BOOST_TEST(c.rcptDsn.notify == (core::notify::Delay | core::notify::Success));
    // No NOTIFY: failure and delay reports, as without DSN.
    c = parseCommand("RCPT TO:<a@b.example>");
    BOOST_TEST(c.rcptDsn.empty());
    BOOST_TEST(c.rcptDsn.wantsFailure());
    BOOST_TEST(c.rcptDsn.wantsDelay());
    BOOST_TEST(!c.rcptDsn.wantsSuccess());
}

BOOST_AUTO_TEST_CASE(rcpt_bad_values_are_501_5_5_4) {
    for (const char* p : {"NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,NEVER", "NOTIFY=SOMETIMES", "NOTIFY=",
                          "NOTIFY", "NOTIFY=SUCCESS,,FAILURE", "NOTIFY=SUCCESS,", "NOTIFY=DELAY,DELAY",
                          "NOTIFY=SUCCESS NOTIFY=FAILURE", "ORCPT=a@b", "ORCPT=;a@b", "ORCPT=rfc822;",
                          "ORCPT=rfc822;a+4", "ORCPT=rfc 822;a", "ORCPT=rfc822;a ORCPT=rfc822;b", "ORCPT"}) {
        Command c = rcpt(p);
        BOOST_TEST((c.error == CommandError::BadParamValue || c.error == CommandError::Syntax), p << ": " << c.detail);
        BOOST_TEST(c.errorReply().code == 501, p);
    }
    BOOST_TEST(rcpt("ORCPT=rfc822;" + std::string(493, 'x')).ok());   // 500 characters in all
    BOOST_TEST(!rcpt("ORCPT=rfc822;" + std::string(494, 'x')).ok());
}

BOOST_AUTO_TEST_CASE(parameters_of_the_other_command_are_unknown) {
    BOOST_TEST((rcpt("RET=FULL").error == CommandError::UnknownParam));
    BOOST_TEST((rcpt("ENVID=x").error == CommandError::UnknownParam));
    BOOST_TEST((mail("NOTIFY=NEVER").error == CommandError::UnknownParam));
    BOOST_TEST((mail("ORCPT=rfc822;a").error == CommandError::UnknownParam));
    CommandOptions off;
    off.dsn = false;  // HELO session: DSN not advertised
    BOOST_TEST((parseCommand("RCPT TO:<a@b.example> NOTIFY=NEVER", off).error == CommandError::UnknownParam));
    BOOST_TEST((parseCommand("MAIL FROM:<a@b.example> RET=FULL", off).error == CommandError::UnknownParam));
}

BOOST_AUTO_TEST_CASE(notify_and_ret_format_canonically) {
    BOOST_TEST(formatNotify(parseNotify("delay,failure,success")) == "SUCCESS,FAILURE,DELAY");
    BOOST_TEST(formatNotify(parseNotify("NEVER")) == "NEVER");
    BOOST_TEST(formatNotify(0) == "");
    BOOST_TEST(formatRet(core::DsnRet::Headers) == "HDRS");
    BOOST_TEST(formatRet(core::DsnRet::Full) == "FULL");
}

BOOST_AUTO_TEST_SUITE_END()
