// RETR and TOP bodies built block by block must be exactly what the whole message gives at
// once, wherever the blocks split it.
#include "pop3/Pop3Body.h"

#include "Pop3Fakes.h"

#include <boost/test/unit_test.hpp>

#include <random>

namespace postern::pop3::test {

namespace {

// The reference: the whole message at once (RFC 1939 3 and 7), as RETR and TOP were built
// before bodies were streamed.
std::string stuffedWhole(std::string_view data) {
    std::string out;
    bool lineStart = true;
    for (char c : data) {
        if (lineStart && c == '.') out += '.';
        out += c;
        lineStart = c == '\n';
    }
    if (!data.empty() && !data.ends_with("\r\n")) out += "\r\n";
    return out + ".\r\n";
}

std::string_view topWhole(std::string_view message, std::uint32_t lines) {
    std::size_t bodyStart;
    if (message.starts_with("\r\n")) {
        bodyStart = 2;
    } else {
        auto p = message.find("\r\n\r\n");
        if (p == std::string_view::npos) return message;
        bodyStart = p + 4;
    }
    std::size_t end = bodyStart;
    for (std::uint32_t i = 0; i < lines && end < message.size(); ++i) {
        auto nl = message.find('\n', end);
        end = nl == std::string_view::npos ? message.size() : nl + 1;
    }
    return message.substr(0, end);
}

std::string drain(Pop3Body& body, bool& failed) {
    std::string all, part;
    failed = false;
    for (;;) {
        const Pop3Body::Status st = body.next(part);
        if (st == Pop3Body::Status::Failed) {
            failed = true;
            return all;
        }
        all += part;
        if (st == Pop3Body::Status::Done) return all;
    }
}

std::string streamed(const std::string& message, std::size_t block, std::optional<std::uint32_t> top) {
    Pop3Body body(std::make_unique<StringStream>(message, block), top);
    bool failed;
    std::string out = drain(body, failed);
    BOOST_REQUIRE(!failed);
    return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pop3_body)

BOOST_AUTO_TEST_CASE(retr_and_top_match_the_whole_message_at_any_block_size) {
    std::mt19937 rng(20261207);
    // Few symbols, so that line starts with ".", CR LF CR LF, bare LFs and CRs are common.
    const char alphabet[] = {'.', '\r', '\n', 'a', 'b'};
    std::uniform_int_distribution<int> symbol(0, 4), length(0, 60), blockSize(1, 9), lines(0, 4);
    for (int round = 0; round < 4000; ++round) {
        std::string m;
        const int n = length(rng);
        for (int i = 0; i < n; ++i) m += alphabet[symbol(rng)];
        const std::size_t block = static_cast<std::size_t>(blockSize(rng));
        BOOST_TEST_CONTEXT("message " << round << " block " << block) {
            BOOST_TEST(streamed(m, block, std::nullopt) == stuffedWhole(m));
            const auto l = static_cast<std::uint32_t>(lines(rng));
            BOOST_TEST(streamed(m, block, l) == stuffedWhole(topWhole(m, l)), "TOP " << l);
        }
    }
}

BOOST_AUTO_TEST_CASE(edge_cases) {
    BOOST_TEST(streamed("", 4, std::nullopt) == ".\r\n");
    BOOST_TEST(streamed("", 4, 0u) == ".\r\n");
    BOOST_TEST(streamed(".\r\n", 1, std::nullopt) == "..\r\n.\r\n");
    BOOST_TEST(streamed("x", 1, std::nullopt) == "x\r\n.\r\n");
    BOOST_TEST(streamed("\r\nbody\r\n", 3, 0u) == "\r\n.\r\n");  // an empty header
    BOOST_TEST(streamed("A: b\r\n\r\n1\r\n.2\r\n3\r\n", 2, 2u) == "A: b\r\n\r\n1\r\n..2\r\n.\r\n");
    BOOST_TEST(streamed("A: b\r\nno body", 5, 3u) == "A: b\r\nno body\r\n.\r\n");
}

// TOP reads only as far as it sends: TOP n 0 of a large message is not a read of all of it.
BOOST_AUTO_TEST_CASE(top_stops_reading_at_its_last_line) {
    const std::string m = "Subject: big\r\n\r\nline 1\r\n" + std::string(1 << 20, 'x') + "\r\n";
    std::size_t reads = 0;  // the body destroys its stream when done: counted outside it
    Pop3Body body(std::make_unique<StringStream>(m, 16, std::nullopt, &reads), 1u);
    std::string part, all;
    Pop3Body::Status st;
    do {
        st = body.next(part);
        all += part;
    } while (st == Pop3Body::Status::More);
    BOOST_TEST((st == Pop3Body::Status::Done));
    BOOST_TEST(all == "Subject: big\r\n\r\nline 1\r\n.\r\n");
    BOOST_TEST(reads <= 3u);
}

// A read error part-way: Failed, and the terminator is never sent (the connection closes, so
// the client cannot take a part for the whole message).
BOOST_AUTO_TEST_CASE(a_read_error_part_way_fails_without_the_terminator) {
    Pop3Body body(std::make_unique<StringStream>(std::string(100, 'a') + "\r\n", 10, 3), std::nullopt);
    bool failed;
    const std::string out = drain(body, failed);
    BOOST_TEST(failed);
    BOOST_TEST(out == std::string(30, 'a'));
    std::string part;
    BOOST_TEST((body.next(part) == Pop3Body::Status::Failed));
    BOOST_TEST(part.empty());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::pop3::test
