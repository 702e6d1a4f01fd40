// RFC 4515 filter and RFC 4514 DN escaping, table-driven (one row per hostile input).
#include "LdapEscape.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>

using namespace postern::plugins::ldap;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(ldap_escape)

namespace {

struct EscapeRow {
    std::string in;
    std::string out;
};
std::ostream& operator<<(std::ostream& o, const EscapeRow& r) {
    return o << '"' << r.in << "\" (" << r.in.size() << " bytes)";
}

using namespace std::string_literals;

// RFC 4515 3: '*' 2a, '(' 28, ')' 29, '\' 5c, NUL 00; nothing else changes.
const EscapeRow FilterRows[] = {
    {"", ""},
    {"alice@example.test", "alice@example.test"},
    {"*", "\\2a"},
    {"*)(uid=*", "\\2a\\29\\28uid=\\2a"},
    {")(", "\\29\\28"},
    {"\\", "\\5c"},
    {"\\00", "\\5c00"},
    {"a\0b"s, "a\\00b"},
    {"\0"s, "\\00"},
    {"bob)(|(objectClass=*)", "bob\\29\\28|\\28objectClass=\\2a\\29"},
    {"\"quoted\"@example.test", "\"quoted\"@example.test"},
    {"o'brien", "o'brien"},
    {"#lead", "#lead"},
    {" sp ", " sp "},
    {",+\"<>;=", ",+\"<>;="},
    {"gr\xc3\xbc\xc3\x9f" "e", "gr\xc3\xbc\xc3\x9f" "e"},
    {"a&b|c!d~e", "a&b|c!d~e"},
};

BOOST_DATA_TEST_CASE(filterValues, bdata::make(FilterRows), row) {
    BOOST_TEST(escapeFilterValue(row.in) == row.out);
}

// RFC 4514 2.4: ", + \" \\ < > ;" (and '=' here) get a backslash; leading '#' or space and a
// trailing space too; NUL is \00.
const EscapeRow DnRows[] = {
    {"", ""},
    {"alice", "alice"},
    {"*", "*"},
    {"(", "("},
    {")", ")"},
    {"\\", "\\\\"},
    {"a\0b"s, "a\\00b"},
    {"#lead", "\\#lead"},
    {"mid#dle", "mid#dle"},
    {" lead", "\\ lead"},
    {"trail ", "trail\\ "},
    {" ", "\\ "},
    {"  ", "\\ \\ "},
    {"in side", "in side"},
    {",", "\\,"},
    {"+", "\\+"},
    {"\"", "\\\""},
    {"<", "\\<"},
    {">", "\\>"},
    {";", "\\;"},
    {"=", "\\="},
    {"a,ou=admins", "a\\,ou\\=admins"},
    {"x,dc=evil,dc=test", "x\\,dc\\=evil\\,dc\\=test"},
    {",+\"\\<>;=", "\\,\\+\\\"\\\\\\<\\>\\;\\="},
    {"gr\xc3\xbc\xc3\x9f" "e", "gr\xc3\xbc\xc3\x9f" "e"},
};

BOOST_DATA_TEST_CASE(dnValues, bdata::make(DnRows), row) {
    BOOST_TEST(escapeDnValue(row.in) == row.out);
}

}  // namespace

BOOST_AUTO_TEST_SUITE_END()
