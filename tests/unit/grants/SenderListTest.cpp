// The senders text of a grant (one address per line), shared by PgGrantStore and the
// clustered POP3 login (postern_pop3_login): join and split.
#include "grants/SenderList.h"

#include <boost/test/unit_test.hpp>

#include <map>

#include <string>
#include <vector>

using postern::grants::joinSenders;
using postern::grants::splitSenders;
using postern::grants::joinLimits;
using postern::grants::splitLimits;
using Senders = std::vector<std::string>;

BOOST_AUTO_TEST_SUITE(sender_list)

BOOST_AUTO_TEST_CASE(join_one_per_line) {
    BOOST_TEST(joinSenders({}) == "");
    BOOST_TEST(joinSenders({"alice@example.org"}) == "alice@example.org");
    BOOST_TEST(joinSenders({"alice@example.org", "a.l@example.net", "x@y"}) ==
               "alice@example.org\na.l@example.net\nx@y");
}

BOOST_AUTO_TEST_CASE(join_leaves_out_addresses_with_a_line_break) {
    BOOST_TEST(joinSenders({"evil@example.org\nother@example.org", "alice@example.org"}) == "alice@example.org");
    BOOST_TEST(joinSenders({"alice@example.org", "bad\n", "bob@example.org"}) == "alice@example.org\nbob@example.org");
    BOOST_TEST(joinSenders({"\n"}) == "");
}

BOOST_AUTO_TEST_CASE(split_skips_empty_lines) {
    BOOST_TEST(splitSenders("") == Senders{}, boost::test_tools::per_element());
    BOOST_TEST(splitSenders("alice@example.org") == Senders{"alice@example.org"}, boost::test_tools::per_element());
    BOOST_TEST(splitSenders("\nalice@example.org\n\nbob@example.org\n") ==
                   (Senders{"alice@example.org", "bob@example.org"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(split_inverts_join) {
    const Senders senders{"alice@example.org", "a.l@example.net", "x@y"};
    BOOST_TEST(splitSenders(joinSenders(senders)) == senders, boost::test_tools::per_element());
}

// A grant's limits: "name=value" lines; a pair that would break the format is left out, and
// splitting gives back what was joined.
BOOST_AUTO_TEST_CASE(limits_join_and_split) {
    using Limits = std::map<std::string, std::string>;
    const Limits limits{{"messages_per_hour", "5"}, {"recipients_per_day", "40"}};
    BOOST_TEST(joinLimits(limits) == "messages_per_hour=5\nrecipients_per_day=40");
    BOOST_TEST((splitLimits(joinLimits(limits)) == limits));
    BOOST_TEST(joinLimits({{"a=b", "1"}, {"", "2"}, {"x", "3\ny=4"}, {"ok", "="}}) == "ok==");
    BOOST_TEST((splitLimits("ok==\nnoequals\n=5\n") == Limits{{"ok", "="}}));
    BOOST_TEST(joinLimits({}).empty());
    BOOST_TEST(splitLimits("").empty());
}

BOOST_AUTO_TEST_SUITE_END()
