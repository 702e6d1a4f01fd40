// RFC 5321 4.1.2 path parser: one row per case, including the expected error.
#include "smtpproto/SmtpAddress.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>

using namespace postern::smtp;
namespace bdata = boost::unit_test::data;

namespace {

const std::string L64(64, 'a');
const std::string L65(65, 'a');
const std::string Label63(63, 'b');
const std::string Label64(64, 'b');
// 4 labels of 63 + 3 dots = 255; one more char -> 256.
const std::string Domain255 = Label63 + "." + Label63 + "." + Label63 + "." + Label63;
const std::string Domain257 = Label63 + "." + Label63 + "." + Label63 + "." + Label63 + ".ab";

struct PathCase {
    std::string name;
    std::string text;
    PathKind kind;
    bool utf8;
    PathError error;
    std::string local;    // expected localPart
    std::string domain;   // expected domain
    std::string address;  // expected address()
};
std::ostream& operator<<(std::ostream& o, const PathCase& c) { return o << c.name; }

const PathKind R = PathKind::Reverse;
const PathKind F = PathKind::Forward;
const PathError Ok = PathError::None;

const PathCase pathCases[] = {
    // plain forms
    {"simple", "<user@example.com>", F, false, Ok, "user", "example.com", "user@example.com"},
    {"domain lower-cased", "<User@Example.COM>", F, false, Ok, "User", "example.com", "User@example.com"},
    {"dot-string", "<first.last+tag@mail.example.org>", F, false, Ok, "first.last+tag", "mail.example.org",
     "first.last+tag@mail.example.org"},
    {"all atext", "<!#$%&'*+-/=?^_`{|}~@example.com>", F, false, Ok, "!#$%&'*+-/=?^_`{|}~", "example.com",
     "!#$%&'*+-/=?^_`{|}~@example.com"},
    {"numeric labels", "<u@123.example>", F, false, Ok, "u", "123.example", "u@123.example"},
    {"hyphen inside label", "<u@a-b.example>", F, false, Ok, "u", "a-b.example", "u@a-b.example"},
    // null path and postmaster
    {"null reverse", "<>", R, false, Ok, "", "", ""},
    {"null forward", "<>", F, false, PathError::NullNotAllowed, "", "", ""},
    {"postmaster bare", "<Postmaster>", F, false, Ok, "postmaster", "", "postmaster"},
    {"postmaster bare lower", "<postmaster>", F, false, Ok, "postmaster", "", "postmaster"},
    {"postmaster bare reverse", "<Postmaster>", R, false, PathError::MissingDomain, "", "", ""},
    {"postmaster with domain", "<Postmaster@Example.com>", F, false, Ok, "Postmaster", "example.com",
     "Postmaster@example.com"},
    {"other bare local", "<user>", F, false, PathError::MissingDomain, "", "", ""},
    {"postmaster routed", "<@a.example:Postmaster>", F, false, PathError::MissingDomain, "", "", ""},
    // source routes: grammar-checked, then ignored (RFC 5321 4.1.2, appendix C)
    {"source route one", "<@relay.example:user@dest.example>", F, false, Ok, "user", "dest.example",
     "user@dest.example"},
    {"source route two", "<@a.example,@b.example:user@dest.example>", F, false, Ok, "user", "dest.example",
     "user@dest.example"},
    {"source route local hides", "<@evil.example:user@local.example>", F, false, Ok, "user", "local.example",
     "user@local.example"},
    {"source route no colon", "<@a.example user@d.example>", F, false, PathError::BadSourceRoute, "", "", ""},
    {"source route empty", "<@:user@d.example>", F, false, PathError::BadSourceRoute, "", "", ""},
    {"source route no at", "<@a.example,b.example:u@d.example>", F, false, PathError::BadSourceRoute, "", "", ""},
    {"source route literal", "<@[1.2.3.4]:u@d.example>", F, false, PathError::BadSourceRoute, "", "", ""},
    // relay tricks: parse with the domain after the last unquoted '@'; local part kept
    {"quoted at", "<\"user@remote.example\"@local.example>", F, false, Ok, "user@remote.example", "local.example",
     "\"user@remote.example\"@local.example"},
    {"percent hack", "<user%remote.example@local.example>", F, false, Ok, "user%remote.example", "local.example",
     "user%remote.example@local.example"},
    {"bang path", "<remote.example!user@local.example>", F, false, Ok, "remote.example!user", "local.example",
     "remote.example!user@local.example"},
    {"quoted percent", "<\"user%remote\"@local.example>", F, false, Ok, "user%remote", "local.example",
     "user%remote@local.example"},
    {"two ats unquoted", "<user@remote.example@local.example>", F, false, PathError::BadDomain, "", "", ""},
    {"trailing dot", "<user@remote.example.>", F, false, PathError::BadDomain, "", "", ""},
    {"trailing dot in route", "<@a.example.:u@d.example>", F, false, PathError::BadSourceRoute, "", "", ""},
    // quoting
    {"quoted simple", "<\"john\"@example.com>", F, false, Ok, "john", "example.com", "john@example.com"},
    {"quoted space", "<\"john doe\"@example.com>", F, false, Ok, "john doe", "example.com",
     "\"john doe\"@example.com"},
    {"quoted escapes", "<\"a\\\"b\\\\c\"@example.com>", F, false, Ok, "a\"b\\c", "example.com",
     "\"a\\\"b\\\\c\"@example.com"},
    {"quoted pair of letter", "<\"\\j\"@example.com>", F, false, Ok, "j", "example.com", "j@example.com"},
    {"quoted empty", "<\"\"@example.com>", F, false, Ok, "", "example.com", "\"\"@example.com"},
    {"quoted unterminated", "<\"john@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"quoted control", "<\"a\tb\"@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"quoted pair control", "<\"a\\\tb\"@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"quoted dots", "<\"a..b\"@example.com>", F, false, Ok, "a..b", "example.com", "\"a..b\"@example.com"},
    // dot-string errors
    {"leading dot", "<.user@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"trailing dot local", "<user.@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"double dot", "<a..b@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"space in local", "<a b@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    {"empty local", "<@example.com>", F, false, PathError::BadSourceRoute, "", "", ""},
    {"comma in local", "<a,b@example.com>", F, false, PathError::BadLocalPart, "", "", ""},
    // brackets
    {"no brackets", "user@example.com", F, false, PathError::MissingBrackets, "", "", ""},
    {"no closing bracket", "<user@example.com", F, false, PathError::MissingBrackets, "", "", ""},
    {"leading space", " <user@example.com>", F, false, PathError::MissingBrackets, "", "", ""},
    {"trailing garbage", "<user@example.com>x", F, false, PathError::TrailingGarbage, "", "", ""},
    {"empty", "", F, false, PathError::MissingBrackets, "", "", ""},
    {"space before gt", "<user@example.com >", F, false, PathError::BadDomain, "", "", ""},
    // domains
    {"empty domain", "<user@>", F, false, PathError::BadDomain, "", "", ""},
    {"empty label", "<user@a..b>", F, false, PathError::BadDomain, "", "", ""},
    {"leading hyphen", "<user@-a.example>", F, false, PathError::BadDomain, "", "", ""},
    {"trailing hyphen", "<user@a-.example>", F, false, PathError::BadDomain, "", "", ""},
    {"underscore", "<user@a_b.example>", F, false, PathError::BadDomain, "", "", ""},
    {"label 63", "<u@" + Label63 + ".example>", F, false, Ok, "u", Label63 + ".example", "u@" + Label63 + ".example"},
    {"label 64", "<u@" + Label64 + ".example>", F, false, PathError::DomainTooLong, "", "", ""},
    {"domain 255", "<u@" + Domain255 + ">", F, false, PathError::PathTooLong, "", "", ""},
    {"domain 257", "<u@" + Domain257 + ">", F, false, PathError::DomainTooLong, "", "", ""},
    {"8-bit domain off", "<u@ex\xC3\xA4mple.com>", F, false, PathError::BadDomain, "", "", ""},
    // RFC 6531 3.3: U-labels with SMTPUTF8, kept as lower-case A-labels (one spelling)
    {"u-label domain on", "<u@ex\xC3\xA4mple.com>", F, true, Ok, "u", "xn--exmple-cua.com", "u@xn--exmple-cua.com"},
    {"u-label upper on", "<u@B\xC3\x9c" "CHER.example>", F, true, Ok, "u", "xn--bcher-kva.example",
     "u@xn--bcher-kva.example"},
    {"a-label domain", "<u@XN--BCHER-KVA.example>", F, false, Ok, "u", "xn--bcher-kva.example", "u@xn--bcher-kva.example"},
    {"bad a-label", "<u@xn--zz.example>", F, false, PathError::BadDomain, "", "", ""},
    {"bad utf8 domain on", "<u@b\xC3(cher.example>", F, true, PathError::EightBitNotAllowed, "", "", ""},
    {"overlong domain on", "<u@b\xC0\xAF.example>", F, true, PathError::EightBitNotAllowed, "", "", ""},
    {"disallowed u-label on", "<u@\xE2\x80\x8Dx.example>", F, true, PathError::BadDomain, "", "", ""},
    {"u-label empty label on", "<u@b\xC3\xBC..example>", F, true, PathError::BadDomain, "", "", ""},
    // address literals
    {"ipv4 literal", "<u@[192.0.2.1]>", F, false, Ok, "u", "[192.0.2.1]", "u@[192.0.2.1]"},
    {"ipv4 literal 256", "<u@[192.0.2.256]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"ipv4 literal short", "<u@[192.0.2]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"ipv4 literal long octet", "<u@[1.2.3.0004]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"ipv6 literal", "<u@[IPv6:2001:DB8::1]>", F, false, Ok, "u", "[IPv6:2001:db8::1]", "u@[IPv6:2001:db8::1]"},
    {"ipv6 literal lower tag", "<u@[ipv6:2001:db8:0:0:0:0:0:1]>", F, false, Ok, "u", "[IPv6:2001:db8::1]",
     "u@[IPv6:2001:db8::1]"},
    {"ipv6 literal bad", "<u@[IPv6:2001:db8::g]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"ipv6 without tag", "<u@[2001:db8::1]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"general literal", "<u@[x-tag:foo]>", F, false, PathError::BadAddressLiteral, "", "", ""},
    {"literal unterminated", "<u@[1.2.3.4>", F, false, PathError::BadAddressLiteral, "", "", ""},
    // length limits (RFC 5321 4.5.3.1)
    {"local 64", "<" + L64 + "@example.com>", F, false, Ok, L64, "example.com", L64 + "@example.com"},
    {"local 65", "<" + L65 + "@example.com>", F, false, PathError::LocalPartTooLong, "", "", ""},
    {"quoted local 65 as sent", "<\"" + std::string(63, 'a') + "\"@example.com>", F, false,
     PathError::LocalPartTooLong, "", "", ""},
    {"path 257", "<@" + Label63 + "." + Label63 + "." + Label63 + ":u@" + Label63 + ".example>", F, false,
     PathError::PathTooLong, "", "", ""},
    // 8-bit (RFC 6531)
    {"utf8 local off", "<j\xC3\xB6rg@example.com>", F, false, PathError::EightBitNotAllowed, "", "", ""},
    {"utf8 local on", "<j\xC3\xB6rg@example.com>", F, true, Ok, "j\xC3\xB6rg", "example.com",
     "j\xC3\xB6rg@example.com"},
    {"utf8 quoted on", "<\"j\xC3\xB6 rg\"@example.com>", F, true, Ok, "j\xC3\xB6 rg", "example.com",
     "\"j\xC3\xB6 rg\"@example.com"},
    {"bad utf8 on", "<j\xC3(rg@example.com>", F, true, PathError::EightBitNotAllowed, "", "", ""},
    {"overlong utf8 on", "<j\xC0\xAFrg@example.com>", F, true, PathError::EightBitNotAllowed, "", "", ""},
    {"surrogate utf8 on", "<j\xED\xA0\x80rg@example.com>", F, true, PathError::EightBitNotAllowed, "", "", ""},
    {"NUL in local", std::string("<a\0b@example.com>", 17), F, false, PathError::BadLocalPart, "", "", ""},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_address)

BOOST_DATA_TEST_CASE(parse_path, bdata::make(pathCases), c) {
    PathOptions opts;
    opts.allowUtf8 = c.utf8;
    ParsedPath p = parsePath(c.text, c.kind, opts);
    BOOST_TEST(static_cast<int>(p.error) == static_cast<int>(c.error), c.name << ": " << p.message);
    BOOST_TEST(p.ok == (c.error == PathError::None));
    if (p.ok) {
        BOOST_TEST(p.localPart == c.local);
        BOOST_TEST(p.domain == c.domain);
        BOOST_TEST(p.address() == c.address);
        // address() must re-parse to the same mailbox (it is what we put on the wire).
        if (!p.isNull && !p.isPostmaster) {
            ParsedPath again = parseMailbox(p.address(), opts);
            BOOST_TEST(again.ok);
            BOOST_TEST(again.localPart == p.localPart);
            BOOST_TEST(again.domain == p.domain);
        }
    } else {
        BOOST_TEST(!p.message.empty());
    }
}

BOOST_AUTO_TEST_CASE(flags) {
    BOOST_TEST(parsePath("<>", PathKind::Reverse).isNull);
    BOOST_TEST(!parsePath("<a@b.example>", PathKind::Reverse).isNull);
    BOOST_TEST(parsePath("<POSTMASTER>", PathKind::Forward).isPostmaster);
    BOOST_TEST(!parsePath("<postmaster@b.example>", PathKind::Forward).isPostmaster);
    BOOST_TEST(parsePath("<a@[192.0.2.1]>", PathKind::Forward).isAddressLiteral);
    BOOST_TEST(!parsePath("<a@b.example>", PathKind::Forward).isAddressLiteral);
    PathOptions utf8;
    utf8.allowUtf8 = true;
    BOOST_TEST(parsePath("<j\xC3\xB6rg@example.com>", PathKind::Forward, utf8).hasUtf8);
    BOOST_TEST(!parsePath("<jorg@example.com>", PathKind::Forward, utf8).hasUtf8);
}

BOOST_AUTO_TEST_CASE(prefix_mode_reports_consumed) {
    std::size_t used = 0;
    ParsedPath p = parsePath("<a@b.example> SIZE=10", PathKind::Reverse, {}, &used);
    BOOST_TEST(p.ok);
    BOOST_TEST(used == 13u);
    // '>' inside a quoted local part does not end the path.
    p = parsePath("<\"a>b\"@c.example> BODY=8BITMIME", PathKind::Reverse, {}, &used);
    BOOST_TEST(p.ok);
    BOOST_TEST(p.localPart == "a>b");
    BOOST_TEST(used == 17u);
    p = parsePath("<> AUTH=<>", PathKind::Reverse, {}, &used);
    BOOST_TEST(p.isNull);
    BOOST_TEST(used == 2u);
}

struct MailboxCase {
    std::string text;
    bool ok;
    std::string address;
};
std::ostream& operator<<(std::ostream& o, const MailboxCase& c) { return o << c.text; }

const MailboxCase mailboxCases[] = {
    {"bob@Example.COM", true, "bob@example.com"},
    {"\"bob smith\"@example.com", true, "\"bob smith\"@example.com"},
    {"<bob@example.com>", false, ""},
    {"bob@example.com.", false, ""},
    {"bob", false, ""},
    {"postmaster", false, ""},
    {"bob@example.com ", false, ""},
    {"@a.example:bob@example.com", false, ""},
    {"", false, ""},
    {"u@" + Domain255, true, "u@" + Domain255},
    {"u@" + Domain255 + "c", false, ""},
};

BOOST_DATA_TEST_CASE(parse_mailbox, bdata::make(mailboxCases), c) {
    ParsedPath p = parseMailbox(c.text);
    BOOST_TEST(p.ok == c.ok);
    if (c.ok)
        BOOST_TEST(p.address() == c.address);
}

BOOST_AUTO_TEST_CASE(path_too_long_once_its_domain_is_in_a_labels) {
    // Found by fuzz_smtp_command: 254 octets as sent with U-labels, 261 with the A-labels the
    // address is kept in; accepted, it could not have been read back from the queue.
    PathOptions utf8;
    utf8.allowUtf8 = true;
    const std::string label(60, 'o');
    const std::string u = "\xCB\x86";  // U+02C6 in a label: its A-label is longer
    std::string domain = label + "." + label + "." + label + "." + "oooo" + u + "le." + "oooo" + u + "le";
    std::string local(std::size_t(254) - 2 - 1 - domain.size(), 'x');
    std::string sent = "<" + local + "@" + domain + ">";
    BOOST_REQUIRE_EQUAL(sent.size(), 254u);
    ParsedPath p = parsePath(sent, PathKind::Forward, utf8);
    BOOST_TEST(!p.ok);
    BOOST_TEST(int(p.error) == int(PathError::PathTooLong));
    // The same domain with a short local part fits either way.
    ParsedPath shorter = parsePath("<x@" + domain + ">", PathKind::Forward, utf8);
    BOOST_TEST(shorter.ok);
    BOOST_TEST(parsePath("<" + shorter.address() + ">", PathKind::Forward, utf8).ok);
}

BOOST_AUTO_TEST_CASE(dot_string) {
    BOOST_TEST(isDotString("a.b"));
    BOOST_TEST(!isDotString(""));
    BOOST_TEST(!isDotString(".a"));
    BOOST_TEST(!isDotString("a."));
    BOOST_TEST(!isDotString("a..b"));
    BOOST_TEST(!isDotString("a b"));
    BOOST_TEST(!isDotString("a@b"));
    BOOST_TEST(isDotString("j\xC3\xB6rg", true));
    BOOST_TEST(!isDotString("j\xC3\xB6rg", false));
}

BOOST_AUTO_TEST_SUITE_END()
