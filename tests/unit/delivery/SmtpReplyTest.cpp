#include "delivery/SmtpReply.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

using namespace postern::delivery;
namespace bdata = boost::unit_test::data;

BOOST_AUTO_TEST_SUITE(smtp_reply)

namespace {
struct Row {
    std::vector<std::string> lines;
    ReplyParser::Result last;
    int code;
    std::string enhanced;
    std::string status;
};
std::ostream& operator<<(std::ostream& o, const Row& r) { return o << (r.lines.empty() ? "" : r.lines.front()); }

const std::vector<Row> Rows = {
    {{"250 2.0.0 Ok: queued as X"}, ReplyParser::Result::Done, 250, "2.0.0", "2.0.0"},
    {{"250-mx.example", "250-PIPELINING", "250 SIZE 1000"}, ReplyParser::Result::Done, 250, "", "2.0.0"},
    {{"550 5.1.1 <a@b>: no such user"}, ReplyParser::Result::Done, 550, "5.1.1", "5.1.1"},
    {{"451 4.7.1 greylisted"}, ReplyParser::Result::Done, 451, "4.7.1", "4.7.1"},
    {{"550 4.1.1 class mismatch"}, ReplyParser::Result::Done, 550, "", "5.0.0"},   // RFC 3463: class must match
    {{"421"}, ReplyParser::Result::Done, 421, "", "4.0.0"},
    {{"554 5.7.1"}, ReplyParser::Result::Done, 554, "5.7.1", "5.7.1"},
    {{"250-first", "251 second"}, ReplyParser::Result::Malformed, 0, "", ""},        // code changed
    {{"25 short"}, ReplyParser::Result::Malformed, 0, "", ""},
    {{"250_bad separator"}, ReplyParser::Result::Malformed, 0, "", ""},
    {{"650 no such class"}, ReplyParser::Result::Malformed, 0, "", ""},
    {{"hello"}, ReplyParser::Result::Malformed, 0, "", ""},
};
}  // namespace

BOOST_DATA_TEST_CASE(parse, bdata::make(Rows), row) {
    ReplyParser p;
    ReplyParser::Result r = ReplyParser::Result::NeedMore;
    for (const auto& l : row.lines) {
        r = p.feed(l);
        if (r != ReplyParser::Result::NeedMore) break;
    }
    BOOST_TEST((r == row.last));
    if (row.last == ReplyParser::Result::Done) {
        BOOST_TEST(p.reply().code == row.code);
        BOOST_TEST(p.reply().enhanced() == row.enhanced);
        BOOST_TEST(p.reply().status() == row.status);
        BOOST_TEST(p.reply().lines.size() == row.lines.size());
    }
}

BOOST_AUTO_TEST_CASE(classes) {
    SmtpReply ok{250, {"ok"}}, temp{451, {"later"}}, perm{550, {"no"}};
    SmtpReply lost = SmtpReply::local("lost connection");
    BOOST_TEST(ok.isPositive());
    BOOST_TEST(temp.isTemporary());
    BOOST_TEST(perm.isPermanent());
    // A connection that broke is "try later", never "no".
    BOOST_TEST(lost.isTemporary());
    BOOST_TEST(!lost.isPermanent());
    BOOST_TEST(lost.status() == "4.4.2");
    BOOST_TEST(lost.text() == "lost connection");
    BOOST_TEST(perm.text() == "550 no");
}

BOOST_AUTO_TEST_SUITE_END()
