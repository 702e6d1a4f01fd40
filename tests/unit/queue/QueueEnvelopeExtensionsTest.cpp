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

BOOST_AUTO_TEST_SUITE_END()
