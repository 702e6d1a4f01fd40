#include "sasl/Base64.h"
#include "sasl/SaslExchange.h"

#include <algorithm>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

using namespace postern::sasl;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(sasl)

struct B64Case {
    const char* in;
    bool ok;
    const char* out;
};
std::ostream& operator<<(std::ostream& o, const B64Case& c) { return o << c.in; }

const B64Case b64Cases[] = {
    {"", true, ""},          {"Zg==", true, "f"},        {"Zm8=", true, "fo"},
    {"Zm9v", true, "foo"},   {"Zm9", false, ""},         {"Zm9v!A==", false, ""},
    {"Z===", false, ""},      {"=Zm9", false, ""},        {"Zg=a", false, ""},
    {"Zm9v Zm9v", false, ""}, {"AGJvYgBzZWNyZXQ=", true, std::string_view("\0bob\0secret", 11).data()},
};

BOOST_DATA_TEST_CASE(base64_strict, bdata::make(b64Cases), c) {
    auto r = decodeBase64(c.in);
    BOOST_TEST(r.has_value() == c.ok);
    if (c.ok && std::string_view(c.in) != "AGJvYgBzZWNyZXQ=")
        BOOST_TEST(*r == c.out);
}

BOOST_AUTO_TEST_CASE(base64_roundtrip) {
    std::string s("\0bob\0secret", 11);
    BOOST_TEST(encodeBase64(s) == "AGJvYgBzZWNyZXQ=");
    BOOST_TEST(*decodeBase64(encodeBase64(s)) == s);
}

BOOST_AUTO_TEST_CASE(plain_initial_response) {
    SaslExchange ex(Mechanism::Plain);
    auto s = ex.start(std::string_view(encodeBase64(std::string("\0bob\0secret", 11))));
    BOOST_TEST((s.kind == StepKind::Done));
    BOOST_TEST(ex.credentials().user == "bob");
    BOOST_TEST(ex.credentials().password == "secret");
}

BOOST_AUTO_TEST_CASE(plain_challenge_then_response) {
    SaslExchange ex(Mechanism::Plain);
    BOOST_TEST((ex.start(std::nullopt).kind == StepKind::Challenge));
    auto s = ex.respond(encodeBase64(std::string("bob\0bob\0pw", 10)));
    BOOST_TEST((s.kind == StepKind::Done));
}

BOOST_AUTO_TEST_CASE(plain_authzid_must_match) {
    SaslExchange ex(Mechanism::Plain);
    auto s = ex.start(std::string_view(encodeBase64(std::string("admin\0bob\0pw", 12))));
    BOOST_TEST((s.kind == StepKind::BadAuthzid));
}

// The same account in another spelling (case, U-label domain) is no other user (as Dovecot
// normalises the authzid like the login before comparing).
BOOST_AUTO_TEST_CASE(plain_authzid_in_another_spelling_of_the_login) {
    auto plain = [](std::string m) {  // '|' stands for the NUL separator
        std::replace(m.begin(), m.end(), '|', '\0');
        return encodeBase64(m);
    };
    for (const char* m : {"Bob@Example.NET|bob@example.net|pw", "bob@example.net|BOB@EXAMPLE.net|pw",
                          "bob@b\xC3\xBC" "cher.example|bob@xn--bcher-kva.example|pw"}) {
        SaslExchange ex(Mechanism::Plain);
        BOOST_TEST((ex.start(std::string_view(plain(m))).kind == StepKind::Done), m);
    }
    // Another user, another domain, a non-ASCII local part in another case (logins compare
    // local parts byte for byte beyond ASCII).
    for (const char* m : {"alice@example.net|bob@example.net|pw", "bob@example.org|bob@example.net|pw",
                          "b\xC3\xB6" "b@example.net|B\xC3\x96" "b@example.net|pw"}) {
        SaslExchange ex(Mechanism::Plain);
        BOOST_TEST((ex.start(std::string_view(plain(m))).kind == StepKind::BadAuthzid), m);
    }
}

BOOST_AUTO_TEST_CASE(plain_malformed_and_cancel) {
    SaslExchange a(Mechanism::Plain);
    BOOST_TEST((a.start(std::string_view(encodeBase64("bobpw"))).kind == StepKind::Malformed));
    SaslExchange b(Mechanism::Plain);
    BOOST_TEST((b.start(std::string_view("!!!!")).kind == StepKind::BadBase64));
    SaslExchange c(Mechanism::Plain);
    c.start(std::nullopt);
    BOOST_TEST((c.respond("*").kind == StepKind::Cancelled));
    SaslExchange d(Mechanism::Plain);
    BOOST_TEST((d.start(std::string_view(encodeBase64(std::string("\0bob\0pw\0x", 9)))).kind == StepKind::Malformed));
}

BOOST_AUTO_TEST_CASE(login_two_steps) {
    SaslExchange ex(Mechanism::Login);
    auto s1 = ex.start(std::nullopt);
    BOOST_TEST((s1.kind == StepKind::Challenge));
    BOOST_TEST(s1.challenge == "VXNlcm5hbWU6");
    auto s2 = ex.respond(encodeBase64("alice"));
    BOOST_TEST(s2.challenge == "UGFzc3dvcmQ6");
    auto s3 = ex.respond(encodeBase64("pw"));
    BOOST_TEST((s3.kind == StepKind::Done));
    BOOST_TEST(ex.credentials().user == "alice");
    BOOST_TEST(ex.credentials().password == "pw");
}

// An empty password is malformed for LOGIN as for PLAIN (before, LOGIN passed it on to the
// backends, which each had to refuse it).
BOOST_AUTO_TEST_CASE(login_empty_password_is_malformed) {
    SaslExchange ex(Mechanism::Login);
    ex.start(std::string_view(encodeBase64("alice")));
    BOOST_TEST((ex.respond("").kind == StepKind::Malformed));
    SaslExchange plain(Mechanism::Plain);
    BOOST_TEST((plain.start(std::string_view(encodeBase64(std::string("\0alice\0", 7)))).kind == StepKind::Malformed));
}

BOOST_AUTO_TEST_CASE(login_initial_response_and_cancel) {
    SaslExchange ex(Mechanism::Login);
    auto s = ex.start(std::string_view(encodeBase64("alice")));
    BOOST_TEST(s.challenge == "UGFzc3dvcmQ6");
    BOOST_TEST((ex.respond("*").kind == StepKind::Cancelled));
    BOOST_TEST((parseMechanism("plain") == Mechanism::Plain));
    BOOST_TEST(!parseMechanism("CRAM-MD5").has_value());
}

BOOST_AUTO_TEST_SUITE_END()
