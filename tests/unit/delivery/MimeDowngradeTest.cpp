// MimeDowngrade: 8-bit MIME parts made 7-bit for a next hop without 8BITMIME (RFC 6152 3,
// RFC 2045 6.7). Decoded back with POCO's quoted-printable decoder (another implementation).
#include "delivery/MimeDowngrade.h"

#include <Poco/Net/QuotedPrintableDecoder.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

using postern::delivery::MimeDowngrade;

namespace {

std::string decodeQp(const std::string& text) {
    std::istringstream in(text);
    Poco::Net::QuotedPrintableDecoder decoder(in);
    std::ostringstream out;
    out << decoder.rdbuf();
    return out.str();
}

bool sevenBit(const std::string& s) {
    for (unsigned char c : s)
        if (c > 127) return false;
    return true;
}

std::vector<std::string> lines(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t lf; (lf = s.find("\r\n", start)) != std::string::npos; start = lf + 2)
        out.push_back(s.substr(start, lf - start));
    if (start < s.size()) out.push_back(s.substr(start));
    return out;
}

// The body of the part whose header block contains `marker` (up to the next "--" line).
std::string partBody(const std::string& message, const std::string& marker) {
    std::size_t at = message.find(marker);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    std::size_t body = message.find("\r\n\r\n", at);
    BOOST_TEST_REQUIRE(body != std::string::npos);
    body += 4;
    std::size_t end = message.find("\r\n--", body);
    return message.substr(body, end == std::string::npos ? std::string::npos : end - body + 2);
}

const std::string Umlauts = "Gr\xc3\xbc\xc3\x9f"
                            "e aus K\xc3\xb6ln = 100 %";

}  // namespace

BOOST_AUTO_TEST_SUITE(MimeDowngradeTest)

BOOST_AUTO_TEST_CASE(a_single_8bit_text_part_becomes_quoted_printable) {
    const std::string in = "From: a@example.org\r\n"
                           "MIME-Version: 1.0\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "Subject: hi\r\n"
                           "\r\n" +
                           Umlauts + "\r\n.leading dot\r\ntrailing space \r\n";
    bool converted = false;
    const std::string out = MimeDowngrade::convert(in, &converted);
    BOOST_TEST(converted);
    BOOST_TEST(sevenBit(out));
    BOOST_TEST(out == "From: a@example.org\r\n"
                      "MIME-Version: 1.0\r\n"
                      "Content-Type: text/plain; charset=utf-8\r\n"
                      "Subject: hi\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n"
                      "\r\n"
                      "Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100 %\r\n"
                      ".leading dot\r\n"
                      "trailing space=20\r\n");
    BOOST_TEST(decodeQp(partBody(out, "Subject")) == Umlauts + "\r\n.leading dot\r\ntrailing space \r\n");
}

BOOST_AUTO_TEST_CASE(long_lines_get_soft_breaks_within_76_characters) {
    std::string text;
    for (int i = 0; i < 990; ++i) text += (i % 7 == 0) ? "\xc3\xa9" : "x";
    text += "\t";
    const std::string in = "Content-Transfer-Encoding: binary\r\n\r\n" + text + "\r\n";
    const std::string out = MimeDowngrade::convert(in);
    BOOST_TEST(sevenBit(out));
    for (const auto& l : lines(out)) BOOST_TEST(l.size() <= 76, l);
    BOOST_TEST(out.find("=09\r\n") != std::string::npos);  // trailing TAB encoded
    BOOST_TEST(decodeQp(out.substr(out.find("\r\n\r\n") + 4)) == text + "\r\n");
}

BOOST_AUTO_TEST_CASE(multipart_parts_are_converted_each_as_declared) {
    const std::string in = "MIME-Version: 1.0\r\n"
                           "Content-Type: multipart/mixed;\r\n"
                           "\tboundary=\"=_outer b\"\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "\r\n"
                           "preamble\r\n"
                           "--=_outer b\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n"
                           "Content-Transfer-Encoding: 8BIT\r\n"
                           "X-Part: one\r\n"
                           "\r\n" +
                           Umlauts +
                           "\r\n"
                           "--=_outer b\r\n"
                           "Content-Type: application/octet-stream\r\n"
                           "Content-Transfer-Encoding: base64\r\n"
                           "X-Part: two\r\n"
                           "\r\n"
                           "AAEC\r\n"
                           "--=_outer b\r\n"
                           "X-Part: three (no CTE: 7bit, undeclared 8-bit octets stay)\r\n"
                           "\r\n"
                           "caf\xc3\xa9\r\n"
                           "--=_outer b--\r\n"
                           "epilogue\r\n";
    bool converted = false;
    const std::string out = MimeDowngrade::convert(in, &converted);
    BOOST_TEST(converted);
    // The multipart is labelled 7bit, never encoded; its preamble and delimiters stay.
    BOOST_TEST(out.starts_with("MIME-Version: 1.0\r\n"
                               "Content-Type: multipart/mixed;\r\n"
                               "\tboundary=\"=_outer b\"\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n"
                               "\r\n"
                               "preamble\r\n"
                               "--=_outer b\r\n"));
    BOOST_TEST(out.find("8BIT") == std::string::npos);
    BOOST_TEST(out.find("X-Part: one\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") != std::string::npos);
    BOOST_TEST(decodeQp(partBody(out, "X-Part: one")) == Umlauts + "\r\n");
    BOOST_TEST(partBody(out, "X-Part: two") == "AAEC\r\n");
    BOOST_TEST(partBody(out, "X-Part: three") == "caf\xc3\xa9\r\n");
    BOOST_TEST(out.ends_with("--=_outer b--\r\nepilogue\r\n"));
}

BOOST_AUTO_TEST_CASE(an_enclosed_message_and_a_digest_are_looked_into) {
    const std::string in = "Content-Type: multipart/digest; boundary=d\r\n"
                           "\r\n"
                           "--d\r\n"
                           "\r\n"
                           "Subject: digest part, message/rfc822 by default\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "\r\n" +
                           Umlauts +
                           "\r\n"
                           "--d\r\n"
                           "Content-Type: message/rfc822\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "\r\n"
                           "Subject: enclosed\r\n"
                           "Content-Type: multipart/alternative; boundary=inner\r\n"
                           "\r\n"
                           "--inner\r\n"
                           "Content-Type: text/html\r\n"
                           "Content-Transfer-Encoding: 8bit\r\n"
                           "\r\n"
                           "<p>" +
                           Umlauts +
                           "</p>\r\n"
                           "--d--\r\n";  // the outer boundary also closes "inner"
    const std::string out = MimeDowngrade::convert(in);
    BOOST_TEST(sevenBit(out));
    BOOST_TEST(decodeQp(partBody(out, "digest part")) == Umlauts + "\r\n");
    BOOST_TEST(out.find("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: enclosed") !=
               std::string::npos);
    BOOST_TEST(decodeQp(partBody(out, "text/html")) == "<p>" + Umlauts + "</p>\r\n");
    BOOST_TEST(out.ends_with("\r\n--d--\r\n"));
}

BOOST_AUTO_TEST_CASE(nothing_to_convert_leaves_the_message_octet_for_octet) {
    const std::vector<std::string> inputs = {
        "Subject: caf\xc3\xa9\r\n\r\nno MIME at all: caf\xc3\xa9\r\n",
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n",
        "Content-Type: multipart/mixed\r\nContent-Transfer-Encoding: 8bit\r\n\r\nno boundary: opaque \xc3\xa9\r\n",
        "Content-Transfer-Encoding: 8bit\r\n",  // ends in its header block: no body
        "Content-Transfer-Encoding: 8bit",
        "To: x\r\nnot a field \xc3\xa9\r\n\r\nbody",
        "",
    };
    for (const auto& in : inputs) {
        bool converted = true;
        BOOST_TEST(MimeDowngrade::convert(in, &converted) == in);
        BOOST_TEST(!converted);
    }
}

BOOST_AUTO_TEST_CASE(a_signed_message_goes_as_it_is) {
    // Converted, the DKIM (or ARC) signature would fail; only the message's own header
    // counts (a signed message enclosed in a part does not stop its parts' conversion).
    for (const std::string field : {"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; bh=x; b=y\r\n",
                                    "arc-message-signature: i=1; a=rsa-sha256; d=example.org; s=s; b=y\r\n"}) {
        const std::string in = field + "Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                                       "--b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n--b--\r\n";
        bool converted = true;
        BOOST_TEST(MimeDowngrade::convert(in, &converted) == in);
        BOOST_TEST(!converted);
    }
    const std::string enclosed = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                                 "DKIM-Signature: v=1; d=example.org\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n";
    BOOST_TEST(MimeDowngrade::convert(enclosed) ==
               "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
               "DKIM-Signature: v=1; d=example.org\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n");
}

BOOST_AUTO_TEST_CASE(a_soft_break_never_starts_a_boundary_delimiter) {
    // RFC 2046 5.1.1: "--b1" at column 74 of an 8bit line would start a line after the soft
    // break and add a part (here an "attachment") the sender never sent.
    const std::string evil = std::string(73, 'a') + "--b1";
    const std::string in = "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
                           "--b1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n" +
                           evil + "\r\nContent-Type: application/x-evil\r\n\r\npayload\r\n--b1--\r\n";
    const std::string out = MimeDowngrade::convert(in);
    const auto ls = lines(out);
    BOOST_TEST(std::count(ls.begin(), ls.end(), "--b1") == 1);
    BOOST_TEST(std::count(ls.begin(), ls.end(), "--b1--") == 1);
    BOOST_TEST(out.find("=\r\n=2D-b1\r\n") != std::string::npos);
    BOOST_TEST(decodeQp(partBody(out, "quoted-printable")) ==
               "\xc3\xa9\r\n" + evil + "\r\nContent-Type: application/x-evil\r\n\r\npayload\r\n");
}

BOOST_AUTO_TEST_CASE(a_part_header_without_its_blank_line_gets_one_when_converted) {
    // Encoded, "Grüße: hello" would read as a field ("Gr=C3=BC=C3=9Fe: hello").
    const std::string out = MimeDowngrade::convert("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                                                   "Content-Transfer-Encoding: 8bit\r\nGr\xc3\xbc\xc3\x9f" "e: hello\r\n--b--\r\n");
    BOOST_TEST(out == "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe: hello\r\n--b--\r\n");
}

BOOST_AUTO_TEST_CASE(labels_stay_true) {
    // Every Content-Transfer-Encoding field of a converted block is replaced by the one label.
    BOOST_TEST(MimeDowngrade::convert("Content-Transfer-Encoding: base64\r\nX: y\r\nContent-Transfer-Encoding: 8bit\r\n"
                                      "\r\n\xc3\xa9\r\n") ==
               "X: y\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9\r\n");
    // An enclosed message whose header block ends in a line that is not a field is not looked
    // into: it keeps its 8bit label (relabelled 7bit it would carry 8-bit octets).
    const std::string garbage = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"
                                "\xc3\xa9 no header\r\nmore \xc3\xa9\r\n";
    bool converted = true;
    BOOST_TEST(MimeDowngrade::convert(garbage, &converted) == garbage);
    BOOST_TEST(!converted);
}

BOOST_AUTO_TEST_CASE(a_header_block_without_its_blank_line) {
    // A line that is not a field ends the block; the label goes before it, and the primary
    // block gets its blank line (as Postfix does).
    const std::string out = MimeDowngrade::convert("Content-Transfer-Encoding: 8bit\r\ncaf\xc3\xa9\r\n");
    BOOST_TEST(out == "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n");
    // The last line without its line end.
    BOOST_TEST(MimeDowngrade::convert("Content-Transfer-Encoding: 8bit\r\n\r\nend \xc3\xa9 ") ==
               "Content-Transfer-Encoding: quoted-printable\r\n\r\nend =C3=A9=20");
}

BOOST_AUTO_TEST_CASE(any_split_of_the_input_gives_the_same_output) {
    std::string in = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                     "Content-Transfer-Encoding: 8bit\r\n\r\n" +
                     Umlauts + "\r\n" + std::string(20000, 'y') + "\xc3\xa9\r\n\r\n--b--\r\n";
    const std::string whole = MimeDowngrade::convert(in);
    BOOST_TEST(sevenBit(whole));
    for (std::size_t step : {1u, 2u, 3u, 7u, 64u, 8191u, 8192u, 8193u}) {
        MimeDowngrade d;
        std::string out;
        for (std::size_t i = 0; i < in.size(); i += step) d.feed(std::string_view(in).substr(i, step), out);
        d.finish(out);
        BOOST_TEST(out == whole, "step " << step);
    }
    // A CR at the end of a piece and its LF in the next still end the line.
    std::string crSplit = "Content-Transfer-Encoding: 8bit\r\n\r\n" + std::string(MimeDowngrade::MaxPiece - 1, 'z') + "\r\n";
    BOOST_TEST(MimeDowngrade::convert(crSplit).find("=0D") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(memory_stays_bounded_for_hostile_input) {
    // A header field longer than MaxFieldLength goes as it is; nesting past MaxDepth is opaque.
    std::string longField = "X-Long: " + std::string(MimeDowngrade::MaxFieldLength + 10, 'a') + "\r\n";
    const std::string in = longField + "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n";
    const std::string out = MimeDowngrade::convert(in);
    BOOST_TEST(out.starts_with(longField));
    BOOST_TEST(out.ends_with("quoted-printable\r\n\r\n=C3=A9\r\n"));

    // Fields after the Content-Transfer-Encoding field beyond MaxHeld: the part goes as it is.
    std::string many = "Content-Transfer-Encoding: 8bit\r\n";
    while (many.size() < MimeDowngrade::MaxHeld) many += "a:\r\n";
    many += "\r\n\xc3\xa9\r\n";
    bool manyConverted = true;
    BOOST_TEST(MimeDowngrade::convert(many, &manyConverted) == many);
    BOOST_TEST(!manyConverted);

    std::string deep;
    for (std::size_t i = 0; i <= MimeDowngrade::MaxDepth; ++i)
        deep += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "z" +
                "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--b" + std::to_string(i) + "z\r\n";
    deep += "Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n";
    bool converted = false;
    const std::string deepOut = MimeDowngrade::convert(deep, &converted);
    BOOST_TEST(converted);
    BOOST_TEST(deepOut.find("\xc3\xa9") != std::string::npos);  // below the limit: as it was
}

BOOST_AUTO_TEST_SUITE_END()
