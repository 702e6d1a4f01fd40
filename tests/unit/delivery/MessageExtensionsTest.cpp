// What a queued message asks of its next hop: SMTPUTF8 need, "TLS-Required: No" (RFC 8689 5).
#include "delivery/MessageExtensions.h"

#include <boost/test/unit_test.hpp>

using namespace postern::delivery;

BOOST_AUTO_TEST_SUITE(message_extensions)

BOOST_AUTO_TEST_CASE(smtputf8_needed_only_for_non_ascii_envelope) {
    BOOST_TEST(!envelopeNeedsSmtpUtf8("a@example.org", {"b@xn--bcher-kva.example"}));
    BOOST_TEST(!envelopeNeedsSmtpUtf8("", {"b@example.org"}));
    BOOST_TEST(envelopeNeedsSmtpUtf8("j\xC3\xB6rg@example.org", {"b@example.org"}));
    BOOST_TEST(envelopeNeedsSmtpUtf8("a@example.org", {"b@example.org", "\xC3\xBC@example.org"}));
}

BOOST_AUTO_TEST_CASE(tls_required_no_header) {
    BOOST_TEST(headerSaysTlsNotRequired("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"));
    BOOST_TEST(headerSaysTlsNotRequired("tls-required:no\r\n\r\n"));
    BOOST_TEST(headerSaysTlsNotRequired("TLS-Required:\r\n  No \r\nSubject: x\r\n\r\n"));  // folded
    BOOST_TEST(!headerSaysTlsNotRequired("Subject: x\r\nTLS-Required: Yes\r\n\r\n"));
    BOOST_TEST(!headerSaysTlsNotRequired("Subject: x\r\n\r\nTLS-Required: No\r\n"));  // in the body
    BOOST_TEST(!headerSaysTlsNotRequired("X-TLS-Required: No\r\n\r\n"));
    BOOST_TEST(!headerSaysTlsNotRequired(""));
}

BOOST_AUTO_TEST_SUITE_END()
