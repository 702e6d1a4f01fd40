#include "queue/QueueEnvelope.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

using namespace postern::queue;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(queue_envelope)

namespace {
QueueEnvelope sample() {
    QueueEnvelope e;
    e.id = "65f1c2a0001f3b9c";
    e.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(1710342816));
    e.sender = "bob@example.org";
    e.recipients = {"alice@example.net", "carol@example.com"};
    e.clientIp = "192.0.2.7";
    e.heloName = "mail.example.org";
    e.authUser = "bob";
    e.sessionId = "1f3a";
    e.attempts = 3;
    e.nextAttempt = std::chrono::system_clock::time_point(std::chrono::seconds(1710343000));
    e.lastError = "451 4.7.1 greylisted, try later";
    return e;
}
}  // namespace

BOOST_AUTO_TEST_CASE(format_is_the_documented_text) {
    auto text = formatQueueEnvelope(sample());
    BOOST_REQUIRE(text);
    BOOST_TEST(*text ==
               "postern-queue 1\n"
               "id 65f1c2a0001f3b9c\n"
               "arrival 1710342816\n"
               "sender bob@example.org\n"
               "recipient alice@example.net\n"
               "recipient carol@example.com\n"
               "client 192.0.2.7\n"
               "helo mail.example.org\n"
               "auth bob\n"
               "session 1f3a\n"
               "attempts 3\n"
               "next-attempt 1710343000\n"
               "last-error 451 4.7.1 greylisted, try later\n");
}

BOOST_AUTO_TEST_CASE(roundtrip_including_null_sender) {
    auto e = sample();
    e.sender = "";
    e.authUser = "";
    auto parsed = parseQueueEnvelope(*formatQueueEnvelope(e));
    BOOST_REQUIRE(parsed);
    BOOST_TEST(parsed->id == e.id);
    BOOST_TEST(parsed->sender == "");
    BOOST_TEST(parsed->recipients == e.recipients);
    BOOST_TEST((parsed->arrival == e.arrival));
    BOOST_TEST(parsed->clientIp == e.clientIp);
    BOOST_TEST(parsed->heloName == e.heloName);
    BOOST_TEST(parsed->authUser == "");
    BOOST_TEST(parsed->sessionId == e.sessionId);
    BOOST_TEST(parsed->attempts == 3u);
    BOOST_TEST((parsed->nextAttempt == e.nextAttempt));
    BOOST_TEST(parsed->lastError == e.lastError);
}

BOOST_AUTO_TEST_CASE(format_refuses_line_breaks_in_values) {
    auto e = sample();
    e.recipients.push_back("evil@example.net\nrecipient injected@example.org");
    BOOST_TEST(!formatQueueEnvelope(e));
    e = sample();
    e.lastError = "a\rb";
    BOOST_TEST(!formatQueueEnvelope(e));
    e = sample();
    e.recipients.clear();
    BOOST_TEST(!formatQueueEnvelope(e));
}

struct ParseCase {
    const char* name;
    const char* text;
    bool ok;
};
std::ostream& operator<<(std::ostream& o, const ParseCase& c) { return o << c.name; }

const ParseCase parseCases[] = {
    {"minimal", "postern-queue 1\nid a\narrival 5\nsender \nrecipient x@y\n", true},
    {"sender without space", "postern-queue 1\nid a\narrival 5\nsender\nrecipient x@y\n", true},
    {"unknown keyword ignored", "postern-queue 1\nid a\narrival 5\nsender s\nrecipient x@y\nfuture 1\n", true},
    {"no magic", "id a\narrival 5\nsender s\nrecipient x@y\n", false},
    {"wrong version", "postern-queue 2\nid a\narrival 5\nsender s\nrecipient x@y\n", false},
    {"torn last line", "postern-queue 1\nid a\narrival 5\nsender s\nrecipient x@y", false},
    {"no recipient", "postern-queue 1\nid a\narrival 5\nsender s\n", false},
    {"empty recipient", "postern-queue 1\nid a\narrival 5\nsender s\nrecipient \n", false},
    {"no sender", "postern-queue 1\nid a\narrival 5\nrecipient x@y\n", false},
    {"no id", "postern-queue 1\narrival 5\nsender s\nrecipient x@y\n", false},
    {"bad arrival", "postern-queue 1\nid a\narrival 5x\nsender s\nrecipient x@y\n", false},
    {"bad attempts", "postern-queue 1\nid a\narrival 5\nsender s\nrecipient x@y\nattempts -1\n", false},
    {"empty", "", false},
};

BOOST_DATA_TEST_CASE(parse_table, bdata::make(parseCases), c) {
    BOOST_TEST(parseQueueEnvelope(c.text).has_value() == c.ok);
}

BOOST_AUTO_TEST_SUITE_END()
