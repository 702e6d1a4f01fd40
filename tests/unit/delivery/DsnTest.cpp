#include "delivery/Dsn.h"

#include <boost/test/unit_test.hpp>

#include <cstring>
#include <string>
#include <vector>

using namespace postern::delivery;

BOOST_AUTO_TEST_SUITE(dsn)

namespace {
DsnInput sample() {
    DsnInput in;
    in.reportingMta = "mail.example.test";
    in.queueId = "65f1c2a0001f3b9c";
    in.originalSender = "alice@example.test";
    in.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(1710342816));
    in.now = std::chrono::system_clock::time_point(std::chrono::seconds(1710346416));
    in.willRetryUntil = in.now;
    in.recipients.push_back({"bad@a.test", "5.1.1", "mx1.a.test", "550 5.1.1 <bad@a.test>: no such user", true, {}});
    in.recipients.push_back({"gone@nullmx.test", "5.1.10", "", "domain nullmx.test does not accept mail (null MX)", false, {}});
    in.originalHeaders = "Subject: hi\r\nX-Test: 1\r\n";
    in.boundary = "B0UND";
    return in;
}
}  // namespace

BOOST_AUTO_TEST_CASE(bounce_is_multipart_report_with_the_rfc3464_fields) {
    std::string m = formatDsn(sample());
    BOOST_TEST(m.find("From: Mail Delivery System <MAILER-DAEMON@mail.example.test>\r\n") == 0);
    BOOST_TEST(m.find("\r\nTo: <alice@example.test>\r\n") != std::string::npos);
    BOOST_TEST(m.find("\r\nAuto-Submitted: auto-replied\r\n") != std::string::npos);
    BOOST_TEST(m.find("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B0UND\"\r\n") !=
               std::string::npos);
    const char* status =
        "--B0UND\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mail.example.test\r\n"
        "X-Postern-Queue-ID: 65f1c2a0001f3b9c\r\n"
        "Arrival-Date: Wed, 13 Mar 2024 15:13:36 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; bad@a.test\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx1.a.test\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bad@a.test>: no such user\r\n"
        "Last-Attempt-Date: Wed, 13 Mar 2024 16:13:36 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; gone@nullmx.test\r\n"
        "Action: failed\r\n"
        "Status: 5.1.10\r\n"
        "Diagnostic-Code: X-Postern; domain nullmx.test does not accept mail (null MX)\r\n"
        "Last-Attempt-Date: Wed, 13 Mar 2024 16:13:36 +0000\r\n"
        "\r\n";
    BOOST_TEST(m.find(status) != std::string::npos, m);
    const char* headers =
        "--B0UND\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "Subject: hi\r\nX-Test: 1\r\n"
        "\r\n--B0UND--\r\n";
    BOOST_TEST(m.size() >= std::strlen(headers));
    BOOST_TEST(m.compare(m.size() - std::strlen(headers), std::string::npos, headers) == 0, m);
    // Every line is CRLF-terminated: no bare LF anywhere.
    for (std::size_t i = 0; i < m.size(); ++i)
        if (m[i] == '\n') BOOST_TEST_REQUIRE((i > 0 && m[i - 1] == '\r'));
}

// RFC 2046 5.1.1: a boundary is at most 70 characters, also with a long host name.
BOOST_AUTO_TEST_CASE(boundary_fits_rfc2046_with_a_long_host_name) {
    BOOST_TEST(dsnBoundary("6b1561e70001d816", 42, "mx.example") == "6b1561e70001d816/42/mx.example");
    const std::string longHost = "mail-submission-frontend-01.customers.region-eu-west.isp.example.net";
    const std::string b = dsnBoundary("6b1561e70001d816", 18446744073709551615ull, longHost);
    BOOST_TEST(b.size() == 70u);
    BOOST_TEST(b.starts_with("6b1561e70001d816/18446744073709551615/mail-submission"));
}

BOOST_AUTO_TEST_CASE(delay_warning_says_delayed_and_until_when) {
    DsnInput in = sample();
    in.action = DsnAction::Delayed;
    in.recipients.resize(1);
    in.recipients[0].status = "4.4.1";
    in.willRetryUntil = std::chrono::system_clock::time_point(std::chrono::seconds(1710774816));
    std::string m = formatDsn(in);
    BOOST_TEST(m.find("Subject: Delayed Mail (still being retried)\r\n") != std::string::npos);
    BOOST_TEST(m.find("Action: delayed\r\nStatus: 4.4.1\r\n") != std::string::npos);
    BOOST_TEST(m.find("Will-Retry-Until: Mon, 18 Mar 2024 15:13:36 +0000\r\n") != std::string::npos);
    BOOST_TEST(m.find("Action: failed") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(remote_text_cannot_inject_fields) {
    DsnInput in = sample();
    in.recipients.resize(1);
    in.recipients[0].diagnostic = "550 evil\r\nAction: delivered\x01";
    std::string m = formatDsn(in);
    BOOST_TEST(m.find("Diagnostic-Code: smtp; 550 evil??Action: delivered?\r\n") != std::string::npos, m);
    BOOST_TEST(m.find("\r\nAction: delivered") == std::string::npos);
}

// The structure of a report, checked part by part: boundaries, content types, field
// groups separated by one empty line (RFC 3464 2.1), each field exactly once.
namespace {
std::vector<std::string> partsOf(const std::string& m, const std::string& boundary) {
    std::vector<std::string> parts;
    const std::string sep = "\r\n--" + boundary;
    std::size_t pos = m.find(sep);
    while (pos != std::string::npos) {
        std::size_t start = pos + sep.size();
        if (m.compare(start, 2, "--") == 0) break;  // closing delimiter
        start += 2;                                  // CRLF after the delimiter
        std::size_t next = m.find(sep, start);
        parts.push_back(m.substr(start, next == std::string::npos ? std::string::npos : next - start));
        pos = next;
    }
    return parts;
}
std::size_t count(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}
}  // namespace

BOOST_AUTO_TEST_CASE(success_report_has_envid_orcpt_and_the_whole_message_for_ret_full) {
    DsnInput in = sample();
    in.action = DsnAction::Delivered;
    in.recipients.resize(1);
    in.recipients[0] = {"bob@example.test", "2.0.0", "", "delivered to mailbox", false, "rfc822;b@x.test"};
    in.envelopeId = "abc+def";
    in.originalMessage = "Subject: hi\r\n\r\nthe body\r\n";
    std::string m = formatDsn(in);
    BOOST_TEST(m.find("Subject: Successful Mail Delivery Report\r\n") != std::string::npos);
    auto parts = partsOf(m, "B0UND");
    BOOST_TEST_REQUIRE(parts.size() == 3u, m);
    BOOST_TEST(parts[0].find("Content-Type: text/plain; charset=us-ascii\r\n\r\n") != std::string::npos);
    BOOST_TEST(parts[1].rfind("Content-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n", 0) == 0);
    // Per-message group first, then one group per recipient.
    std::string body = parts[1].substr(parts[1].find("\r\n\r\n") + 4);
    auto groupEnd = body.find("\r\n\r\n");
    std::string perMessage = body.substr(0, groupEnd + 2);
    std::string perRecipient = body.substr(groupEnd + 4);
    BOOST_TEST(perMessage.rfind("Original-Envelope-Id: abc+def\r\nReporting-MTA: dns; mail.example.test\r\n", 0) == 0,
               perMessage);
    BOOST_TEST(count(perMessage, "Arrival-Date: ") == 1u);
    BOOST_TEST(perRecipient.rfind("Original-Recipient: rfc822;b@x.test\r\n"
                                  "Final-Recipient: rfc822; bob@example.test\r\n"
                                  "Action: delivered\r\n"
                                  "Status: 2.0.0\r\n"
                                  "Diagnostic-Code: X-Postern; delivered to mailbox\r\n", 0) == 0,
               perRecipient);
    BOOST_TEST(count(perRecipient, "Action: ") == 1u);
    BOOST_TEST(perRecipient.find("Will-Retry-Until") == std::string::npos);
    BOOST_TEST(parts[2] == "Content-Description: Message\r\nContent-Type: message/rfc822\r\n\r\n"
                           "Subject: hi\r\n\r\nthe body\r\n",
               parts[2]);
}

BOOST_AUTO_TEST_CASE(relayed_report_and_unprintable_envid_shown_as_xtext) {
    DsnInput in = sample();
    in.action = DsnAction::Relayed;
    in.recipients.resize(1);
    in.recipients[0].status = "2.0.0";
    in.recipients[0].originalRecipient = "rfc822;a\r\nAction: x";
    in.envelopeId = "id\r\nX: y";
    std::string m = formatDsn(in);
    BOOST_TEST(m.find("Action: relayed\r\n") != std::string::npos);
    BOOST_TEST(m.find("Original-Envelope-Id: id+0D+0AX:+20y\r\n") != std::string::npos, m);
    BOOST_TEST(m.find("Original-Recipient: rfc822;a+0D+0AAction:+20x\r\n") != std::string::npos, m);
    BOOST_TEST(m.find("\r\nX: y") == std::string::npos);
    BOOST_TEST(m.find("Content-Type: text/rfc822-headers\r\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(header_section_stops_at_the_empty_line_and_at_the_cap) {
    BOOST_TEST(headerSection("A: 1\r\nB: 2\r\n\r\nbody\r\n") == "A: 1\r\nB: 2\r\n");
    BOOST_TEST(headerSection("\r\nbody only\r\n") == "");
    BOOST_TEST(headerSection("A: 1\r\nB: 2\r\nC: 3\r\n\r\n", 14) == "A: 1\r\nB: 2\r\n");
}

// Found by fuzz_dsn_report: a message stored byte-exact (BDAT, BINARYMIME) may have bare
// CR/LF, NUL and long lines; the report must still be CRLF lines of at most 998 octets.
namespace {
void checkLines(const std::string& m) {
    std::size_t lineStart = 0;
    for (std::size_t i = 0; i < m.size(); ++i) {
        if (m[i] == '\r') {
            BOOST_REQUIRE(i + 1 < m.size());
            BOOST_TEST(m[i + 1] == '\n');
            BOOST_TEST(i - lineStart <= 998u);
            lineStart = i + 2;
            ++i;
        } else {
            BOOST_TEST(m[i] != '\n');
        }
    }
    BOOST_TEST(lineStart == m.size());
}
}  // namespace

BOOST_AUTO_TEST_CASE(attached_headers_are_crlf_lines_of_at_most_998_octets) {
    DsnInput in = sample();
    in.originalHeaders = "Subject: bare lf\nX-Cr: a\rX-Nul: a" + std::string(1, '\0') + "b\r\nX-Long: " +
                         std::string(2000, 'x') + "\r\nX-Last: no crlf";
    std::string m = formatDsn(in);
    checkLines(m);
    BOOST_TEST(m.find("Subject: bare lf\r\nX-Cr: a\r\nX-Nul: a?b\r\nX-Long: xxx") != std::string::npos, m);
    BOOST_TEST(m.find("\r\nX-Long: " + std::string(990, 'x') + "\r\nX-Last: no crlf\r\n\r\n--B0UND--\r\n") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(ret_full_of_a_binary_message_returns_its_header_section) {
    DsnInput in = sample();
    in.originalMessage = "Subject: hi\r\nX-Test: 1\r\n\r\nbinary\nbody\r" + std::string(1500, 'y') + "\r\n";
    std::string m = formatDsn(in);
    checkLines(m);
    BOOST_TEST(m.find("Content-Type: message/rfc822") == std::string::npos);
    BOOST_TEST(m.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hi\r\nX-Test: 1\r\n\r\n--B0UND--\r\n") !=
               std::string::npos, m);
    // A conforming message is still returned whole.
    in.originalMessage = "Subject: hi\r\n\r\nthe body\r\n";
    BOOST_TEST(formatDsn(in).find("Content-Type: message/rfc822\r\n\r\nSubject: hi\r\n\r\nthe body\r\n") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(notification_line_of_a_long_address_and_reply_is_cut_at_998) {
    DsnInput in = sample();
    in.recipients.resize(1);
    in.recipients[0].address = std::string(700, 'a');
    in.recipients[0].diagnostic = "550 " + std::string(900, 'd');
    checkLines(formatDsn(in));
}

// RFC 6533: a report about a UTF-8 address is a global one and keeps the address as it is;
// an ASCII-only report stays message/delivery-status with rfc822 addresses.
BOOST_AUTO_TEST_CASE(utf8_addresses_make_a_global_report) {
    DsnInput in = sample();
    in.originalSender = "j\xC3\xB6rg@example.test";
    in.recipients.resize(1);
    in.recipients[0].address = "\xC3\xBCser@a.test";
    in.recipients[0].originalRecipient = "utf-8;\xC3\xBCser@a.test";
    std::string m = formatDsn(in);
    BOOST_TEST(m.find("To: <j\xC3\xB6rg@example.test>\r\n") != std::string::npos);
    BOOST_TEST(m.find("Content-Type: text/plain; charset=utf-8\r\n") != std::string::npos);
    BOOST_TEST(m.find("Content-Type: message/global-delivery-status\r\n") != std::string::npos);
    BOOST_TEST(m.find("Final-Recipient: utf-8; \xC3\xBCser@a.test\r\n") != std::string::npos);
    BOOST_TEST(m.find("Original-Recipient: utf-8; \xC3\xBCser@a.test\r\n") != std::string::npos);
    BOOST_TEST(m.find("Content-Type: message/global-headers\r\n") != std::string::npos);
    BOOST_TEST(m.find("report-type=delivery-status") != std::string::npos);
    // Invalid UTF-8 is never copied: cleaned, and the report stays an ASCII one.
    DsnInput bad = sample();
    bad.recipients[0].address = "x\xC0\xAF@a.test";
    std::string b = formatDsn(bad);
    BOOST_TEST(b.find("Content-Type: message/delivery-status\r\n") != std::string::npos);
    BOOST_TEST(b.find("Final-Recipient: rfc822; x??@a.test\r\n") != std::string::npos);
    // ASCII only: unchanged.
    BOOST_TEST(formatDsn(sample()).find("Final-Recipient: rfc822; bad@a.test\r\n") != std::string::npos);
}

// RFC 2045 6.1: a part without Content-Transfer-Encoding is 7bit, whatever the multipart
// says; a part carrying 8-bit octets is declared 8bit (as Postfix does), an ASCII one is not.
BOOST_AUTO_TEST_CASE(parts_with_8bit_octets_say_8bit) {
    auto fieldsOf = [](const std::string& m, const std::string& type) {
        const auto at = m.find("Content-Type: " + type + "\r\n");
        BOOST_REQUIRE(at != std::string::npos);
        return m.substr(at, m.find("\r\n\r\n", at) - at);
    };
    // An ASCII report of a message with UTF-8 content, returned whole (RET=FULL).
    DsnInput full = sample();
    full.originalMessage = "Subject: caf\xC3\xA9\r\n\r\nna\xC3\xAFve\r\n";
    std::string m = formatDsn(full);
    BOOST_TEST(fieldsOf(m, "message/rfc822").find("Content-Transfer-Encoding: 8bit") != std::string::npos, m);
    BOOST_TEST(fieldsOf(m, "message/delivery-status").find("Content-Transfer-Encoding") == std::string::npos);
    BOOST_TEST(fieldsOf(m, "text/plain; charset=us-ascii").find("Content-Transfer-Encoding") == std::string::npos);
    // Its header section only.
    DsnInput headers = sample();
    headers.originalHeaders = "Subject: caf\xC3\xA9\r\n";
    m = formatDsn(headers);
    BOOST_TEST(fieldsOf(m, "text/rfc822-headers").find("Content-Transfer-Encoding: 8bit") != std::string::npos, m);
    BOOST_TEST(fieldsOf(formatDsn(sample()), "text/rfc822-headers").find("Content-Transfer-Encoding") == std::string::npos);
    // A global report: UTF-8 addresses in the text and the delivery-status parts.
    DsnInput global = sample();
    global.recipients.resize(1);
    global.recipients[0].address = "\xC3\xBCser@a.test";
    m = formatDsn(global);
    BOOST_TEST(fieldsOf(m, "text/plain; charset=utf-8").find("Content-Transfer-Encoding: 8bit") != std::string::npos, m);
    BOOST_TEST(fieldsOf(m, "message/global-delivery-status").find("Content-Transfer-Encoding: 8bit") != std::string::npos);
    BOOST_TEST(fieldsOf(m, "message/global-headers").find("Content-Transfer-Encoding") == std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
