// Reply formatting with enhanced status codes (RFC 5321 4.2, RFC 3463, RFC 2034).
#include "smtpproto/ReplyCode.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>

using namespace postern::smtp;
namespace bdata = boost::unit_test::data;

namespace {

struct FormatCase {
    std::string name;
    Reply reply;
    bool enhanced;
    std::string wire;
};
std::ostream& operator<<(std::ostream& o, const FormatCase& c) { return o << c.name; }

const FormatCase formatCases[] = {
    {"ok enhanced", replies::ok(), true, "250 2.0.0 Ok\r\n"},
    {"ok plain", replies::ok(), false, "250 Ok\r\n"},
    {"recipient ok", replies::recipientOk(), true, "250 2.1.5 Ok\r\n"},
    {"sender ok", replies::senderOk(), true, "250 2.1.0 Ok\r\n"},
    {"user unknown", replies::userUnknown(), true, "550 5.1.1 User unknown\r\n"},
    {"relay denied", replies::relayDenied(), true, "554 5.7.1 Relay access denied\r\n"},
    {"temp failure", replies::tempFailure(), true, "451 4.3.0 Temporary failure, try again later\r\n"},
    {"too big", replies::messageTooBig(), true, "552 5.3.4 Message size exceeds fixed limit\r\n"},
    {"auth required", replies::authRequired(), true, "530 5.7.0 Authentication required\r\n"},
    {"auth invalid", replies::authInvalid(), true, "535 5.7.8 Authentication credentials invalid\r\n"},
    {"auth ok", replies::authSucceeded(), true, "235 2.7.0 Authentication successful\r\n"},
    {"greeting no enhanced", replies::greeting("mx.example"), true, "220 mx.example ESMTP Postern\r\n"},
    {"354 no enhanced", replies::startMailInput(), true, "354 End data with <CR><LF>.<CR><LF>\r\n"},
    {"challenge", replies::authChallenge("VXNlcm5hbWU6"), true, "334 VXNlcm5hbWU6\r\n"},
    {"empty challenge", replies::authChallenge(""), true, "334\r\n"},
    {"closing", replies::closing("mx.example"), true, "221 2.0.0 mx.example closing connection\r\n"},
    {"queued", replies::queued("ABC123"), true, "250 2.0.0 Ok: queued as ABC123\r\n"},
    {"ehlo", replies::ehlo("mx.example", {"PIPELINING", "SIZE 10240000", "8BITMIME"}), true,
     "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"},
    {"ehlo alone", replies::ehlo("mx.example", {}), true, "250 mx.example\r\n"},
    {"multi-line enhanced on each line", Reply(550, Enhanced::BadDestinationMailbox, {"one", "two"}), true,
     "550-5.1.1 one\r\n550 5.1.1 two\r\n"},
    {"multi-line plain", Reply(550, Enhanced::BadDestinationMailbox, {"one", "two"}), false,
     "550-one\r\n550 two\r\n"},
    {"CRLF in text neutralised", Reply(250, Enhanced::Other, "a\r\n250 evil"), true, "250 2.0.0 a  250 evil\r\n"},
    {"default is tempfail", Reply(), true, "451 4.3.0\r\n"},
    {"timeout", replies::timeout(), true, "421 4.4.2 Timeout, closing connection\r\n"},
    {"queue full", replies::queueFull(), true, "452 4.3.1 Insufficient system storage\r\n"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(reply_code)

BOOST_DATA_TEST_CASE(format, bdata::make(formatCases), c) {
    BOOST_TEST(c.reply.format(c.enhanced) == c.wire);
}

BOOST_AUTO_TEST_CASE(enhanced_class_follows_code) {
    BOOST_TEST(formatEnhanced(250, Enhanced::DestinationValid) == "2.1.5");
    BOOST_TEST(formatEnhanced(450, Enhanced::BadDestinationMailbox) == "4.1.1");
    BOOST_TEST(formatEnhanced(550, Enhanced::BadDestinationMailbox) == "5.1.1");
    BOOST_TEST(formatEnhanced(554, Enhanced::EncryptionRequired) == "5.7.11");
    BOOST_TEST(formatEnhanced(354, Enhanced::Other) == "");
    BOOST_TEST(formatEnhanced(250, Enhanced::None) == "");
}

// Review finding: a policy server's or milter's text of thousands of octets went out as one
// reply line (RFC 5321 4.5.3.1.5: at most 512 with CRLF).
BOOST_AUTO_TEST_CASE(longTextsAreCutToTheLineLimit) {
    const std::string out = Reply(550, Enhanced::DeliveryNotAuthorized, {std::string(2000, 'a'), "short"}).format(true);
    const auto first = out.substr(0, out.find("\r\n") + 2);
    BOOST_TEST(first.size() == MaxReplyLine);
    BOOST_TEST(first.substr(0, 10) == "550-5.7.1 ");
    BOOST_TEST(out.substr(first.size()) == "550 5.7.1 short\r\n");
    // Never inside a UTF-8 character: "é" is 2 octets; 500 of them do not fit.
    std::string accents;
    for (int i = 0; i < 500; ++i) accents += "\xc3\xa9";
    const std::string cut = Reply(451, Enhanced::None, accents).format(true);
    BOOST_TEST(cut.size() <= MaxReplyLine);
    BOOST_TEST(cut.size() >= MaxReplyLine - 1);
    BOOST_TEST(cut.substr(cut.size() - 4) == "\xc3\xa9\r\n");
    // Exactly 512 is kept whole.
    const std::string exact = Reply(250, Enhanced::None, std::string(MaxReplyLine - 6, 'b')).format(false);
    BOOST_TEST(exact.size() == MaxReplyLine);
    BOOST_TEST(exact.substr(exact.size() - 3) == "b\r\n");
}

BOOST_AUTO_TEST_CASE(classification) {
    BOOST_TEST(replies::ok().isPositive());
    BOOST_TEST(replies::startMailInput().isPositive());
    BOOST_TEST(replies::tempFailure().isTransient());
    BOOST_TEST(!replies::tempFailure().isPermanent());
    BOOST_TEST(replies::relayDenied().isPermanent());
    BOOST_TEST(replies::userUnknown().text() == "User unknown");
    BOOST_TEST((replies::ok() == Reply(250, Enhanced::Other, "Ok")));
    BOOST_TEST(!(replies::ok() == replies::senderOk()));
}

BOOST_AUTO_TEST_SUITE_END()
