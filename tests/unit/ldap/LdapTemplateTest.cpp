// Filter / DN templates: placeholder expansion with escaping, and rejection of bad templates.
#include "LdapTemplate.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <stdexcept>
#include <string>

using namespace postern::plugins::ldap;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(ldap_template)

namespace {

BOOST_AUTO_TEST_CASE(splitsAtTheLastAt) {
    auto p = NameParts::split("\"a@b\"@example.test");
    BOOST_TEST(p.full == "\"a@b\"@example.test");
    BOOST_TEST(p.local == "\"a@b\"");
    BOOST_TEST(p.domain == "example.test");
    auto q = NameParts::split("alice");
    BOOST_TEST(q.local == "alice");
    BOOST_TEST(q.domain == "");
}

struct ExpandRow {
    std::string kind;  // "filter" or "dn"
    std::string tmpl;
    std::string name;
    std::string out;
};
std::ostream& operator<<(std::ostream& o, const ExpandRow& r) { return o << r.tmpl << " <- " << r.name; }

const ExpandRow ExpandRows[] = {
    {"filter", "(&(objectClass=inetOrgPerson)(|(mail=%u)(uid=%n)))", "alice@example.test",
     "(&(objectClass=inetOrgPerson)(|(mail=alice@example.test)(uid=alice)))"},
    {"filter", "(mail=%u)", "*", "(mail=\\2a)"},
    {"filter", "(mail=%u)", "*)(uid=*", "(mail=\\2a\\29\\28uid=\\2a)"},
    {"filter", "(&(uid=%n)(dc=%d))", "a*b@ex(am)ple.test", "(&(uid=a\\2ab)(dc=ex\\28am\\29ple.test))"},
    {"filter", "(mail=%n%%%d)", "a@b", "(mail=a%b)"},
    {"filter", "(sAMAccountName=%n)", "ad\\user@corp", "(sAMAccountName=ad\\5cuser)"},
    {"dn", "uid=%n,ou=people,dc=example,dc=test", "alice@example.test", "uid=alice,ou=people,dc=example,dc=test"},
    {"dn", "uid=%n,ou=people,dc=example,dc=test", "x,ou=admins@example.test",
     "uid=x\\,ou\\=admins,ou=people,dc=example,dc=test"},
    {"dn", "uid=%n,ou=%d,dc=test", " #a@b ", "uid=\\ #a,ou=b\\ ,dc=test"},
    {"dn", "cn=%u,dc=test", "*", "cn=*,dc=test"},
};

BOOST_DATA_TEST_CASE(expands, bdata::make(ExpandRows), row) {
    auto t = LdapTemplate::parse("k", row.tmpl, row.kind == "dn" ? LdapTemplate::Kind::Dn : LdapTemplate::Kind::Filter);
    BOOST_TEST(t.expand(NameParts::split(row.name)) == row.out);
}

struct BadRow {
    std::string kind;
    std::string tmpl;
    std::string error;  // substring of the message
};
std::ostream& operator<<(std::ostream& o, const BadRow& r) { return o << r.tmpl; }

const BadRow BadRows[] = {
    {"filter", "", "is empty"},
    {"filter", "(mail=%x)", "unknown placeholder '%x'"},
    {"filter", "(mail=%u)%", "lone '%'"},
    {"filter", "mail=%u", "enclosed in parentheses"},
    {"filter", "(mail=%u", "unbalanced '('"},
    {"filter", "(mail=%u))", "unbalanced ')'"},
    {"filter", "(mail=%u)(uid=%n)", "text after the closing ')'"},
    {"dn", "uid=%s,dc=test", "unknown placeholder '%s'"},
};

BOOST_DATA_TEST_CASE(rejects, bdata::make(BadRows), row) {
    try {
        LdapTemplate::parse("user_filter", row.tmpl,
                            row.kind == "dn" ? LdapTemplate::Kind::Dn : LdapTemplate::Kind::Filter);
        BOOST_FAIL("accepted " + row.tmpl);
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()).find(row.error) != std::string::npos, e.what());
        BOOST_TEST(std::string(e.what()).find("user_filter") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(escapedParenthesisInTemplateIsNotCounted) {
    auto t = LdapTemplate::parse("k", "(cn=a\\29b%u)", LdapTemplate::Kind::Filter);
    BOOST_TEST(t.expand(NameParts::split("x")) == "(cn=a\\29bx)");
}

BOOST_AUTO_TEST_CASE(pinsTheDomainOnlyWhenEveryMatchHasIt) {
    auto filter = [](const char* t) { return LdapTemplate::parse("k", t, LdapTemplate::Kind::Filter).pinsDomain(); };
    auto dn = [](const char* t) { return LdapTemplate::parse("k", t, LdapTemplate::Kind::Dn).pinsDomain(); };
    BOOST_TEST(filter("(mail=%u)"));
    BOOST_TEST(filter("(&(uid=%n)(associatedDomain=%d))"));
    BOOST_TEST(dn("uid=%n,ou=%d,dc=test"));
    BOOST_TEST(!filter("(uid=%n)"));
    BOOST_TEST(!filter("(|(mail=%u)(uid=%n))"));  // bob's entry for bob@any-domain
    BOOST_TEST(!dn("uid=%n,ou=people,dc=test"));
    BOOST_TEST(!filter("(objectClass=person)"));
    // %n and %d, but an alternative matches on %n alone.
    BOOST_TEST(!filter("(|(uid=%n)(mail=%n@%d))"));
    BOOST_TEST(!filter("(|(uid=%n)(associatedDomain=%d))"));
    BOOST_TEST(!filter("(&(uid=%n)(!(associatedDomain=%d)))"));
    BOOST_TEST(filter("(&(objectClass=person)(mail=%n@%d))"));
}

}  // namespace

BOOST_AUTO_TEST_SUITE_END()
