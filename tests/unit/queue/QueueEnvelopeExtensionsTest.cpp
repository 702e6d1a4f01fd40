// The optional SMTPUTF8 / REQUIRETLS keyword lines of the queue envelope.
#include "queue/QueueEnvelope.h"

#include <boost/test/unit_test.hpp>

using namespace postern::queue;

BOOST_AUTO_TEST_SUITE(queue_envelope_extensions)

BOOST_AUTO_TEST_CASE(flags_roundtrip_and_are_optional_lines) {
    QueueEnvelope e;
    e.id = "65f1c2a0001f3b9c";
    e.sender = "j\xC3\xB6rg@example.org";
    e.recipients = {"\xC3\xBC" "ser@xn--bcher-kva.example"};
    auto plain = formatQueueEnvelope(e);
    BOOST_REQUIRE(plain);
    BOOST_TEST(plain->find("smtputf8") == std::string::npos);
    BOOST_TEST(plain->find("requiretls") == std::string::npos);
    e.smtpUtf8 = true;
    e.requireTls = true;
    auto text = formatQueueEnvelope(e);
    BOOST_REQUIRE(text);
    BOOST_TEST(text->find("\nsmtputf8 1\n") != std::string::npos);
    BOOST_TEST(text->find("\nrequiretls 1\n") != std::string::npos);
    auto back = parseQueueEnvelope(*text);
    BOOST_REQUIRE(back);
    BOOST_TEST(back->smtpUtf8);
    BOOST_TEST(back->requireTls);
    BOOST_TEST(back->sender == e.sender);  // UTF-8 byte for byte
    BOOST_TEST(back->recipients == e.recipients);
    auto none = parseQueueEnvelope(*plain);
    BOOST_REQUIRE(none);
    BOOST_TEST(!none->smtpUtf8);
    BOOST_TEST(!none->requireTls);
}

// A recipient that failed for good whose report is still owed (review finding: it was sent
// the message again at every retry while its bounce could not be queued).
BOOST_AUTO_TEST_CASE(owed_reports_roundtrip_per_recipient) {
    QueueEnvelope e;
    e.id = "65f1c2a0001f3b9c";
    e.sender = "bob@example.org";
    e.recipients = {"alice@example.net", "\"c d\"@example.com", "erin@example.com"};
    e.owedReports["\"c d\"@example.com"] = {"5.1.1", 550, "mx.example.com", "5.1.1 <c d>: user unknown"};
    e.owedReports["erin@example.com"] = {"5.4.4", 0, "", ""};
    e.owedReports["gone@example.com"] = {"5.0.0", 550, "x", "y"};  // not a recipient: not written
    auto text = formatQueueEnvelope(e);
    BOOST_REQUIRE(text);
    BOOST_TEST(text->find("\nfailed 1 5.1.1 550 mx.example.com 5.1.1+20<c+20d>:+20user+20unknown\n") != std::string::npos,
               *text);
    BOOST_TEST(text->find("\nfailed 2 5.4.4 0  \n") != std::string::npos, *text);
    BOOST_TEST(text->find("gone@") == std::string::npos);
    auto back = parseQueueEnvelope(*text);
    BOOST_REQUIRE(back);
    BOOST_TEST(back->owedReports.size() == 2u);
    BOOST_TEST((back->owedReports.at("\"c d\"@example.com") == e.owedReports.at("\"c d\"@example.com")));
    BOOST_TEST((back->owedReports.at("erin@example.com") == e.owedReports.at("erin@example.com")));
    // Removing a recipient renumbers the lines consistently.
    e.recipients.erase(e.recipients.begin());
    back = parseQueueEnvelope(*formatQueueEnvelope(e));
    BOOST_REQUIRE(back);
    BOOST_TEST(back->owedReports.count("erin@example.com") == 1u);
    // A line that cannot be read is dropped, never the message; a bad status is never written.
    auto torn = parseQueueEnvelope(*text + "failed 0 5.1.1 x\n");
    BOOST_REQUIRE(torn);
    BOOST_TEST(torn->owedReports.count("alice@example.net") == 0u);
    e.owedReports["erin@example.com"].status = "5.1.1 x";
    BOOST_TEST(!formatQueueEnvelope(e));
}

BOOST_AUTO_TEST_SUITE_END()
