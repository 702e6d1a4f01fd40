// DATA phase reader: unstuffing, end-of-data detection (including every SMTP smuggling
// variant, CVE-2023-51764/51765/51766), pipelined bytes, limits. Each row runs fed in one
// chunk, byte by byte, and in chunks of 2..7 bytes; all must agree.
#include "smtpproto/DataReader.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>

using namespace postern::smtp;
namespace bdata = boost::unit_test::data;

namespace {

constexpr std::size_t NotDone = std::string::npos;

struct DataCase {
    std::string name;
    std::string input;
    std::string content;   // what the sink must receive (only checked when not rejected)
    std::size_t endsAt;    // bytes consumed when done; NotDone if the data must not end
    bool bare;             // sawBareLineEnding
};
std::ostream& operator<<(std::ostream& o, const DataCase& c) { return o << c.name; }

const DataCase dataCases[] = {
    {"simple", "Subject: x\r\n\r\nhello\r\n.\r\n", "Subject: x\r\n\r\nhello\r\n", 24, false},
    {"empty message", ".\r\n", "", 3, false},
    {"one empty line", "\r\n.\r\n", "\r\n", 5, false},
    {"pipelined after end", "a\r\n.\r\nQUIT\r\n", "a\r\n", 6, false},
    {"pipelined MAIL after end", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n", 6, false},
    {"unstuff leading dot", "..hidden\r\n.\r\n", ".hidden\r\n", 13, false},
    {"unstuff dot line", "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 13, false},
    {"unstuff dot text", "a\r\n.text\r\n.\r\n", "a\r\ntext\r\n", 13, false},
    {"dot not at line start", "a.b\r\n.\r\n", "a.b\r\n", 8, false},
    {"dot space not end", "a\r\n. \r\n.\r\n", "a\r\n \r\n", 10, false},
    {"two dots then end", "a\r\n...\r\n.\r\n", "a\r\n..\r\n", 11, false},
    {"not ended", "a\r\nb\r\n", "a\r\nb\r\n", NotDone, false},
    {"not ended dot pending", "a\r\n.", "a\r\n", NotDone, false},
    {"not ended dot cr pending", "a\r\n.\r", "a\r\n", NotDone, false},
    {"long run then end", std::string(900, 'x') + "\r\n.\r\n", std::string(900, 'x') + "\r\n", 905, false},
    // SMTP smuggling: none of these is the end of the data
    {"smuggle LF.LF", "a\n.\nMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle CRLF.LF", "a\r\n.\nMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle LF.CRLF", "a\n.\r\nMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle CR.CR", "a\r.\rMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle CR.CRLF", "a\r.\r\nMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle CRLF.CR", "a\r\n.\rMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle CRLF.CRCRLF", "a\r\n.\r\r\nMAIL FROM:<x@y>\r\n", "", NotDone, true},
    {"smuggle LF.LF at start", ".\nMAIL\r\n", "", NotDone, true},
    {"smuggle NUL no effect", std::string("a\r\n.\0\r\n", 7), std::string("a\r\n\0\r\n", 6), NotDone, false},
    // smuggling attempts followed by a real end: the data ends at the real one, flagged
    {"smuggle then real end LF.LF", "a\n.\nb\r\n.\r\nQUIT\r\n", "", 10, true},
    {"smuggle then real end CRLF.LF", "a\r\n.\nb\r\n.\r\nQUIT\r\n", "", 11, true},
    {"smuggle then real end LF.CRLF", "a\n.\r\nb\r\n.\r\nQUIT\r\n", "", 11, true},
    // bare line endings anywhere are flagged
    {"bare LF in text", "a\nb\r\n.\r\n", "", 8, true},
    {"bare CR in text", "a\rb\r\n.\r\n", "", 8, true},
    {"CR CR LF", "a\r\r\n.\r\n", "", 7, true},
    {"bare LF at start", "\n.\r\n", "", NotDone, true},
    {"bare LF before real end", "a\n\r\n.\r\n", "", 7, true},
};

// The limits these tests run with unless a case narrows one (DataReaderLimits has no
// defaults of its own: the smtp.max_* keys set it). Line length as RFC 5321 4.5.3.1.6.
DataReaderLimits testLimits() {
    DataReaderLimits l;
    l.maxMessageSize = 10240000;
    l.maxLineLength = 1000;
    l.maxHeaderSize = 102400;
    return l;
}

struct Result {
    std::string content;
    std::size_t consumed = 0;
    bool done = false;
    DataStatus status;
};

Result run(const std::string& input, std::size_t chunk, const DataReaderLimits& limits = testLimits()) {
    DataReader reader(limits);
    Result r;
    DataReader::Sink sink = [&](const char* p, std::size_t n) {
        BOOST_TEST(n > 0u);
        r.content.append(p, n);
    };
    std::size_t pos = 0;
    while (pos < input.size() && !reader.isDone()) {
        std::size_t n = std::min(chunk, input.size() - pos);
        // A copy per chunk: the reader must not keep pointers into an earlier buffer.
        std::string buf = input.substr(pos, n);
        std::size_t used = reader.feed(buf.data(), buf.size(), sink);
        BOOST_TEST(used <= n);
        pos += used;
        if (used < n)
            BOOST_TEST(reader.isDone());
    }
    r.consumed = pos;
    r.done = reader.isDone();
    r.status = reader.status();
    return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(data_reader)

BOOST_DATA_TEST_CASE(end_detection_and_unstuffing, bdata::make(dataCases), c) {
    for (std::size_t chunk : {c.input.size() + 1, std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(7)}) {
        BOOST_TEST_CONTEXT("chunk " << chunk) {
            Result r = run(c.input, chunk);
            BOOST_TEST(r.done == (c.endsAt != NotDone));
            if (c.endsAt != NotDone)
                BOOST_TEST(r.consumed == c.endsAt);
            else
                BOOST_TEST(r.consumed == c.input.size());
            BOOST_TEST(r.status.sawBareLineEnding == c.bare);
            if (!c.bare) {
                BOOST_TEST(r.content == c.content);
                BOOST_TEST(r.status.bytes == c.content.size());
            } else {
                // A rejected message stops reaching the sink at the first bare line end:
                // no bare LF is ever passed on.
                for (std::size_t i = 0; i < r.content.size(); ++i)
                    if (r.content[i] == '\n')
                        BOOST_TEST((i > 0 && r.content[i - 1] == '\r'));
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(one_chunk_calls_sink_once) {
    DataReader reader(testLimits());
    int calls = 0;
    std::string in = "line one\r\nline two\r\nline three\r\n.\r\n";
    reader.feed(in.data(), in.size(), [&](const char*, std::size_t) { ++calls; });
    BOOST_TEST(reader.isDone());
    BOOST_TEST(calls == 1);
}

BOOST_AUTO_TEST_CASE(feed_after_done_consumes_nothing) {
    DataReader reader(testLimits());
    std::string in = ".\r\n";
    DataReader::Sink sink = [](const char*, std::size_t) {};
    BOOST_TEST(reader.feed(in.data(), in.size(), sink) == 3u);
    BOOST_TEST(reader.feed("QUIT\r\n", 6, sink) == 0u);
}

BOOST_AUTO_TEST_CASE(size_limit) {
    DataReaderLimits limits = testLimits();
    limits.maxMessageSize = 10;
    // Exactly 10 stored octets (the stuffed dot is not counted).
    Result ok = run("..2345678\r\n.\r\n", 64, limits);
    BOOST_TEST(!ok.status.sizeExceeded);
    BOOST_TEST(ok.content == ".2345678\r\n");
    BOOST_TEST(ok.status.bytes == 10u);

    for (std::size_t chunk : {std::size_t(1), std::size_t(5), std::size_t(1000)}) {
        Result big = run("0123456789a\r\nmore\r\n.\r\nQUIT\r\n", chunk, limits);
        BOOST_TEST(big.done);
        BOOST_TEST(big.consumed == 22u);  // reading continued to the end of data
        BOOST_TEST(big.status.sizeExceeded);
        BOOST_TEST(big.status.bytes == 19u);
        BOOST_TEST(big.content.size() <= 10u);  // nothing past the limit reached the sink
    }
}

BOOST_AUTO_TEST_CASE(line_limit) {
    DataReaderLimits limits = testLimits();
    limits.maxLineLength = 10;  // including CRLF
    Result ok = run("12345678\r\n..2345678\r\n.\r\n", 1000, limits);
    BOOST_TEST(!ok.status.lineTooLong);  // 10 with CRLF; the stuffed dot does not count
    Result bad = run("123456789\r\n.\r\n", 1000, limits);
    BOOST_TEST(bad.done);
    BOOST_TEST(bad.status.lineTooLong);
    // testLimits(): RFC 5321 4.5.3.1.6, 1000 octets with CRLF.
    BOOST_TEST(!run(std::string(998, 'x') + "\r\n.\r\n", 1000).status.lineTooLong);
    BOOST_TEST(run(std::string(999, 'x') + "\r\n.\r\n", 1000).status.lineTooLong);
}

BOOST_AUTO_TEST_CASE(header_limit) {
    DataReaderLimits limits = testLimits();
    limits.maxHeaderSize = 20;
    // 20 octets of header, then a long body: fine.
    Result ok = run("A: 123456789012345\r\n\r\n" + std::string(100, 'b') + "\r\n.\r\n", 7, limits);
    BOOST_TEST(!ok.status.headerTooLong);
    Result bad = run("A: 1234567890123456\r\n\r\nbody\r\n.\r\n", 7, limits);
    BOOST_TEST(bad.done);
    BOOST_TEST(bad.status.headerTooLong);
    // No empty line at all: everything is header.
    Result allHeader = run("A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n.\r\n", 3, limits);
    BOOST_TEST(allHeader.status.headerTooLong);
    // A message starting with an empty line has an empty header section.
    Result noHeader = run("\r\n" + std::string(100, 'b') + "\r\n.\r\n", 3, limits);
    BOOST_TEST(!noHeader.status.headerTooLong);
}

BOOST_AUTO_TEST_CASE(rejection_replies) {
    DataReaderLimits limits = testLimits();
    auto reply = [&](const std::string& in) {
        DataReader r(limits);
        r.feed(in.data(), in.size(), [](const char*, std::size_t) {});
        auto rej = r.rejection();
        return rej ? rej->format(true) : std::string("none");
    };
    BOOST_TEST(reply("ok\r\n.\r\n") == "none");
    BOOST_TEST(reply("a\nb\r\n.\r\n") == "554 5.6.0 Message contains bare CR or LF\r\n");
    limits.maxLineLength = 5;
    BOOST_TEST(reply("abcdef\r\n.\r\n") == "554 5.6.0 Message line too long\r\n");
    limits.maxMessageSize = 3;
    BOOST_TEST(reply("abcdef\r\n.\r\n") == "552 5.3.4 Message size exceeds fixed limit\r\n");
    // Bare line endings win over every other problem.
    BOOST_TEST(reply("abc\rdef\r\n.\r\n") == "554 5.6.0 Message contains bare CR or LF\r\n");
    limits = testLimits();
    limits.maxHeaderSize = 4;
    BOOST_TEST(reply("Subject: x\r\n\r\n.\r\n") == "552 5.3.4 Message header section too large\r\n");
}

BOOST_AUTO_TEST_SUITE_END()
