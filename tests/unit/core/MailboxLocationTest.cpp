// The mailbox location rule (core/MailboxLocation.h), shared by RCPT and the store.
#include "core/MailboxLocation.h"

#include <boost/test/unit_test.hpp>

#include <optional>
#include <string>

using postern::core::normalizeMailboxLocation;

BOOST_AUTO_TEST_SUITE(MailboxLocation)

BOOST_AUTO_TEST_CASE(relativePathsAreKeptOneTrailingSlashDropped) {
    BOOST_TEST(normalizeMailboxLocation("example.test/alice").value() == "example.test/alice");
    BOOST_TEST(normalizeMailboxLocation("example.test/alice/").value() == "example.test/alice");
    BOOST_TEST(normalizeMailboxLocation("a").value() == "a");
    BOOST_TEST(normalizeMailboxLocation("a/.b/c..d").value() == "a/.b/c..d");
}

BOOST_AUTO_TEST_CASE(whatCouldLeaveTheMailRootIsRefused) {
    for (const char* bad : {"", "/", "/var/vmail/a", "a//b", "a/../b", "..", "a/..", "./a", "a/.", "a//",
                            "a\nb", "a\tb", "a\x7f", "a/b\r", ".postern-spool", ".postern-spool/x"}) {
        BOOST_TEST(!normalizeMailboxLocation(bad).has_value(), std::string("'") + bad + "'");
    }
}

BOOST_AUTO_TEST_SUITE_END()
