// The DSN lines of the queue envelope (RFC 3461 requests kept across restarts).
#include "queue/QueueEnvelope.h"

#include <boost/test/unit_test.hpp>

using namespace postern;
using namespace postern::queue;

BOOST_AUTO_TEST_SUITE(queue_envelope_dsn)

namespace {
QueueEnvelope sample() {
    QueueEnvelope e;
    e.id = "65f1c2a0001f3b9c";
    e.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(1710342816));
    e.sender = "bob@example.org";
    e.recipients = {"alice@example.net", "\"c d\"@example.com", "erin@example.com"};
    e.dsn.ret = core::DsnRet::Headers;
    e.dsn.envid = "abc+def\r\n";
    e.recipientDsn["alice@example.net"] = {core::notify::Success | core::notify::Failure, "rfc822", "a@b"};
    e.recipientDsn["erin@example.com"] = {core::notify::Never, "", ""};
    e.recipientDsn["gone@example.com"] = {core::notify::Delay, "", ""};  // not a recipient: not written
    return e;
}
}  // namespace

BOOST_AUTO_TEST_CASE(dsn_lines_are_optional_keywords_with_recipient_indexes) {
    auto text = formatQueueEnvelope(sample());
    BOOST_REQUIRE(text);
    BOOST_TEST(text->rfind("postern-queue 1\n", 0) == 0);
    BOOST_TEST(text->find("dsn-ret HDRS\ndsn-envid abc+2Bdef+0D+0A\n"
                          "dsn-rcpt 0 notify=SUCCESS,FAILURE orcpt=rfc822;a@b\n"
                          "dsn-rcpt 2 notify=NEVER\n") != std::string::npos,
               *text);
    BOOST_TEST(text->find("gone@") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(round_trip_and_renumbering_after_a_recipient_is_removed) {
    QueueEnvelope e = sample();
    auto back = parseQueueEnvelope(*formatQueueEnvelope(e));
    BOOST_REQUIRE(back);
    BOOST_TEST((back->dsn.ret == core::DsnRet::Headers));
    BOOST_TEST(back->dsn.envid == "abc+def\r\n");
    BOOST_TEST(back->recipientDsn.size() == 2u);
    BOOST_TEST(back->dsnFor("alice@example.net").orcpt == "a@b");
    BOOST_TEST(back->dsnFor("alice@example.net").notify == (core::notify::Success | core::notify::Failure));
    BOOST_TEST(back->dsnFor("erin@example.com").notify == core::notify::Never);
    BOOST_TEST(back->dsnFor("\"c d\"@example.com").empty());
    // The delivered first recipient leaves: erin becomes index 1, and keeps her NEVER.
    back->recipients.erase(back->recipients.begin());
    auto text = formatQueueEnvelope(*back);
    BOOST_TEST(text->find("dsn-rcpt 1 notify=NEVER\n") != std::string::npos, *text);
    auto again = parseQueueEnvelope(*text);
    BOOST_TEST(again->dsnFor("erin@example.com").notify == core::notify::Never);
    BOOST_TEST(again->dsnFor("alice@example.net").empty());
}

BOOST_AUTO_TEST_CASE(an_envelope_without_dsn_lines_is_unchanged_and_bad_dsn_lines_never_lose_the_message) {
    QueueEnvelope plain = sample();
    plain.dsn = {};
    plain.recipientDsn.clear();
    auto text = formatQueueEnvelope(plain);
    BOOST_TEST(text->find("dsn-") == std::string::npos);
    std::string broken = *text + "dsn-envid a+zz\ndsn-rcpt x notify=SUCCESS\ndsn-rcpt 9 notify=DELAY\n"
                                 "dsn-rcpt 0 notify=SOMETIMES\ndsn-rcpt 1 orcpt=rfc822;a x-later=1\n";
    auto e = parseQueueEnvelope(broken);
    BOOST_REQUIRE(e);
    BOOST_TEST(e->recipients.size() == 3u);
    BOOST_TEST(e->dsn.envid.empty());
    BOOST_TEST(e->dsnFor("alice@example.net").empty());
    BOOST_TEST(e->dsnFor("\"c d\"@example.com").orcpt == "a");  // unknown attribute ignored
}

BOOST_AUTO_TEST_SUITE_END()
