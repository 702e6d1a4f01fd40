// DKIM canonicalisation (RFC 6376 3.4) against the RFC's own example (3.4.5), plus the
// edge cases of the body rules and the From-domain parser.
#include "dkim/Canonical.h"

#include <boost/test/unit_test.hpp>

using namespace postern::dkim;

namespace {

// RFC 6376 3.4.5, verbatim ("<SP>", "<HTAB>" and "<CRLF>" written out).
const std::string Rfc6376Example =
    "A: X\r\n"
    "B : Y\t\r\n"
    "\tZ  \r\n"
    "\r\n"
    " C \r\n"
    "D \t E\r\n"
    "\r\n"
    "\r\n";

std::string headers(const MessageParts& p, Canon c) {
    std::string out;
    for (const auto& h : p.headers) out += canonicalHeader(h.raw, c);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dkim_canonical)

BOOST_AUTO_TEST_CASE(rfc6376_example_relaxed) {
    MessageParts p = splitMessage(Rfc6376Example);
    BOOST_REQUIRE_EQUAL(p.headers.size(), 2u);
    BOOST_TEST(headers(p, Canon::Relaxed) == "a:X\r\nb:Y Z\r\n");
    BOOST_TEST(canonicalBodyString(p.body, Canon::Relaxed) == " C\r\nD E\r\n");
}

BOOST_AUTO_TEST_CASE(rfc6376_example_simple) {
    MessageParts p = splitMessage(Rfc6376Example);
    BOOST_TEST(headers(p, Canon::Simple) == "A: X\r\nB : Y\t\r\n\tZ  \r\n");
    BOOST_TEST(canonicalBodyString(p.body, Canon::Simple) == " C \r\nD \t E\r\n");
}

BOOST_AUTO_TEST_CASE(split_names_and_continuations) {
    MessageParts p = splitMessage("From: a@b.example\r\nSubject: one\r\n two\r\nX-Y :z\r\n\r\nbody\r\n");
    BOOST_REQUIRE_EQUAL(p.headers.size(), 3u);
    BOOST_TEST(p.headers[0].name == "From");
    BOOST_TEST(p.headers[1].raw == "Subject: one\r\n two\r\n");
    BOOST_TEST(p.headers[2].name == "X-Y");
    BOOST_TEST(p.body == "body\r\n");
}

BOOST_AUTO_TEST_CASE(no_empty_line_means_no_body) {
    MessageParts p = splitMessage("Subject: x\r\n");
    BOOST_TEST(p.headers.size() == 1u);
    BOOST_TEST(p.body.empty());
    MessageParts q = splitMessage("\r\nonly body\r\n");
    BOOST_TEST(q.headers.empty());
    BOOST_TEST(q.body == "only body\r\n");
}

BOOST_AUTO_TEST_CASE(empty_bodies) {
    // RFC 6376 3.4.3: simple turns an empty body into one CRLF; 3.4.4: relaxed leaves it empty.
    BOOST_TEST(canonicalBodyString("", Canon::Simple) == "\r\n");
    BOOST_TEST(canonicalBodyString("", Canon::Relaxed) == "");
    BOOST_TEST(canonicalBodyString("\r\n\r\n", Canon::Simple) == "\r\n");
    BOOST_TEST(canonicalBodyString(" \t\r\n\r\n", Canon::Relaxed) == "");
}

BOOST_AUTO_TEST_CASE(last_line_without_crlf_gets_one) {
    BOOST_TEST(canonicalBodyString("abc", Canon::Simple) == "abc\r\n");
    BOOST_TEST(canonicalBodyString("a  b \t", Canon::Relaxed) == "a b\r\n");
}

BOOST_AUTO_TEST_CASE(inner_empty_lines_kept_trailing_dropped) {
    BOOST_TEST(canonicalBodyString("a\r\n\r\n\r\nb\r\n\r\n", Canon::Relaxed) == "a\r\n\r\n\r\nb\r\n");
    BOOST_TEST(canonicalBodyString("a\r\n \r\nb\r\n", Canon::Simple) == "a\r\n \r\nb\r\n");
}

BOOST_AUTO_TEST_CASE(eight_bit_octets_untouched) {
    const std::string body = "Gr\xc3\xbc\xc3\x9f" "e \xff\r\n";
    BOOST_TEST(canonicalBodyString(body, Canon::Relaxed) == body);
}

BOOST_AUTO_TEST_CASE(very_long_line) {
    std::string line(200000, 'x');
    BOOST_TEST(canonicalBodyString(line + "  \r\n", Canon::Relaxed) == line + "\r\n");
}

BOOST_AUTO_TEST_CASE(relaxed_header_rules) {
    BOOST_TEST(canonicalHeader("SUBJect \t:  Hello \t  World \r\n", Canon::Relaxed) == "subject:Hello World\r\n");
    BOOST_TEST(canonicalHeader("To: a@b.example,\r\n\tc@d.example\r\n", Canon::Relaxed) ==
               "to:a@b.example, c@d.example\r\n");
    BOOST_TEST(canonicalHeader("X-Empty:\r\n", Canon::Relaxed) == "x-empty:\r\n");
}

BOOST_AUTO_TEST_CASE(from_domain_forms) {
    BOOST_TEST(fromDomainOfValue(" alice@Example.COM").domain == "example.com");
    BOOST_TEST(fromDomainOfValue(" Alice <alice@example.com>").domain == "example.com");
    BOOST_TEST(fromDomainOfValue(" \"Bob, the <boss@evil.example>\" <bob@example.org>").domain == "example.org");
    BOOST_TEST(fromDomainOfValue(" bob@example.org (at evil.example, really)").domain == "example.org");
    BOOST_TEST(fromDomainOfValue(" \"odd@name\"@example.net").domain == "example.net");
    // The local part, for "is this From the user's own": lower-cased; none when quoted.
    BOOST_TEST(fromDomainOfValue(" Alice <Alice@example.com>").local == "alice");
    BOOST_TEST(fromDomainOfValue(" \"Bob, the <boss@evil.example>\" <bob@example.org>").local == "bob");
    BOOST_TEST(fromDomainOfValue(" \"odd@name\"@example.net").local == "");
    BOOST_TEST(fromDomainOfValue(" <\"ceo\"@example.net>").local == "");
    BOOST_TEST(fromDomainOfValue(" J\xc3\xb6rg <j@b\xc3\xbc" "cher.example>").domain == "b\xc3\xbc" "cher.example");
}

BOOST_AUTO_TEST_CASE(from_domain_refusals) {
    BOOST_TEST(fromDomainOfValue(" a@x.example, b@y.example").problem == "multiple_from");
    BOOST_TEST(fromDomainOfValue(" friends: a@x.example;").problem == "multiple_from");
    BOOST_TEST(fromDomainOfValue(" <a@x.example> <b@y.example>").problem == "multiple_from");
    BOOST_TEST(fromDomainOfValue(" nobody").problem == "bad_from");
    BOOST_TEST(fromDomainOfValue(" a@[192.0.2.1]").problem == "bad_from");
    BOOST_TEST(fromDomainOfValue(" \"unterminated@x.example").problem == "bad_from");
    MessageParts two = splitMessage("From: a@x.example\r\nFrom: b@x.example\r\n\r\n");
    BOOST_TEST(fromDomain(two.headers).problem == "multiple_from");
    MessageParts none = splitMessage("Subject: x\r\n\r\n");
    BOOST_TEST(fromDomain(none.headers).problem == "no_from");
}

BOOST_AUTO_TEST_SUITE_END()
