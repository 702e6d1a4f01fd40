// Fuzz target: the SMTP DATA reader (smtp::DataReader) fed the same bytes in one piece and
// in random chunk splits. Invariants: never crashes; every split gives the same content,
// end position and status; once done, feed() returns 0; the end is only ever at
// CRLF "." CRLF (or "." CRLF first); an accepted message's content has only CRLF line ends
// and, dot-stuffed again, reads back to the same content ending at the same place
// (no SMTP smuggling: CVE-2023-51764/51765/51766).
// The same bytes also go through smtp::LineCheck (BDAT content without BINARYMIME), whole
// and in the same splits, against a plain byte-by-byte reference; content DataReader
// accepted passes LineCheck.
#include "FuzzAssert.h"
#include "smtpproto/DataReader.h"
#include "smtpproto/LineCheck.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace postern::smtp;

namespace {

struct Run {
    std::string content;
    std::size_t consumed = 0;  // bytes used up to the end marker (all, if not done)
    bool done = false;
    DataStatus status;
    bool rejected = false;
};

// Feeds `input` in chunks whose sizes cycle through `splits` (empty: one piece).
// The limits a run uses unless the input asks for small ones (DataReaderLimits has no
// defaults of its own: the smtp.max_* keys set it in the server).
DataReaderLimits roomyLimits() {
    DataReaderLimits l;
    l.maxMessageSize = 10240000;
    l.maxLineLength = 1000;  // RFC 5321 4.5.3.1.6
    l.maxHeaderSize = 102400;
    return l;
}

Run feedAll(std::string_view input, const std::vector<std::size_t>& splits, const DataReaderLimits& limits) {
    Run run;
    DataReader reader(limits);
    DataReader::Sink sink = [&run](const char* p, std::size_t n) {
        FUZZ_CHECK(n > 0);
        run.content.append(p, n);
    };
    std::size_t pos = 0;
    std::size_t k = 0;
    while (pos < input.size()) {
        std::size_t chunk = splits.empty() ? input.size() - pos : splits[k++ % splits.size()];
        if (chunk > input.size() - pos)
            chunk = input.size() - pos;
        const bool wasDone = reader.isDone();
        std::size_t used = reader.feed(input.data() + pos, chunk, sink);
        if (wasDone) {
            FUZZ_CHECK(used == 0);
            break;
        }
        FUZZ_CHECK(used <= chunk);
        if (!reader.isDone())
            FUZZ_CHECK(used == chunk);
        pos += used;
        if (reader.isDone()) {
            // Once done, nothing more is taken, whatever follows.
            FUZZ_CHECK(reader.feed(input.data() + pos, input.size() - pos, sink) == 0);
            break;
        }
    }
    run.consumed = pos;
    run.done = reader.isDone();
    run.status = reader.status();
    run.rejected = reader.rejection().has_value();
    return run;
}

std::string stuff(std::string_view content) {
    std::string out;
    bool lineStart = true;
    for (char c : content) {
        if (lineStart && c == '.')
            out += '.';
        out += c;
        lineStart = c == '\n';
    }
    return out;
}

const std::vector<std::size_t> kWhole;
const std::vector<std::size_t> kOneByte{1};

struct LineResult {
    bool bare = false;
    bool tooLong = false;
};

LineResult lineCheck(std::string_view input, const std::vector<std::size_t>& splits, std::size_t maxLine) {
    LineCheck check(maxLine);
    std::size_t pos = 0, k = 0;
    while (pos < input.size()) {
        std::size_t chunk = splits.empty() ? input.size() - pos : splits[k++ % splits.size()];
        if (chunk > input.size() - pos)
            chunk = input.size() - pos;
        check.feed(input.substr(pos, chunk));
        pos += chunk;
    }
    check.finish();
    FUZZ_CHECK(check.rejection().has_value() == (check.sawBareLineEnding() || check.lineTooLong()));
    return {check.sawBareLineEnding(), check.lineTooLong()};
}

// One octet at a time: CR only before LF, LF only after CR; a line is counted up to and
// including its LF.
LineResult lineReference(std::string_view s, std::size_t maxLine) {
    LineResult r;
    std::size_t line = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n'))
            r.bare = true;
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            r.bare = true;
        if (++line > maxLine)
            r.tooLong = true;
        if (s[i] == '\n')
            line = 0;
    }
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    // First byte: how many split sizes follow (0..7), each byte one chunk size (1..256);
    // then the bytes as the client sent them after "354".
    std::size_t nSplits = data[0] & 7;
    if (size < 1 + nSplits)
        return 0;
    std::vector<std::size_t> splits;
    for (std::size_t i = 0; i < nSplits; ++i)
        splits.push_back(static_cast<std::size_t>(data[1 + i]) + 1);
    std::string_view input(reinterpret_cast<const char*>(data + 1 + nSplits), size - 1 - nSplits);

    DataReaderLimits limits = roomyLimits();
    if (data[0] & 8) {  // small limits so the limit paths are reached with short inputs
        limits.maxMessageSize = 200;
        limits.maxLineLength = 40;
        limits.maxHeaderSize = 100;
    }

    Run whole = feedAll(input, {}, limits);
    Run bytewise = feedAll(input, {1}, limits);
    Run chunked = feedAll(input, splits, limits);
    for (const Run* r : {&bytewise, &chunked}) {
        FUZZ_CHECK(r->done == whole.done);
        FUZZ_CHECK(r->consumed == whole.consumed);
        FUZZ_CHECK(r->status.bytes == whole.status.bytes);
        FUZZ_CHECK(r->status.sawBareLineEnding == whole.status.sawBareLineEnding);
        FUZZ_CHECK(r->status.sizeExceeded == whole.status.sizeExceeded);
        FUZZ_CHECK(r->status.lineTooLong == whole.status.lineTooLong);
        FUZZ_CHECK(r->status.headerTooLong == whole.status.headerTooLong);
        FUZZ_CHECK(r->rejected == whole.rejected);
        if (!whole.rejected)
            FUZZ_CHECK(r->content == whole.content);
    }

    if (whole.done) {
        // The end marker is CRLF "." CRLF, or "." CRLF as the very first line.
        std::string_view used = input.substr(0, whole.consumed);
        FUZZ_CHECK(used.size() >= 3 && used.substr(used.size() - 3) == ".\r\n");
        FUZZ_CHECK(used.size() == 3 || (used.size() >= 5 && used.substr(used.size() - 5, 2) == "\r\n"));
    } else {
        FUZZ_CHECK(whole.consumed == input.size());
    }
    if (!whole.status.sawBareLineEnding && !whole.rejected)
        FUZZ_CHECK(whole.status.bytes == whole.content.size());

    const LineResult ref = lineReference(input, limits.maxLineLength);
    for (const std::vector<std::size_t>* sp : {&std::as_const(splits), &kOneByte, &kWhole}) {
        const LineResult got = lineCheck(input, *sp, limits.maxLineLength);
        FUZZ_CHECK(got.bare == ref.bare);
        FUZZ_CHECK(got.tooLong == ref.tooLong);
    }

    if (whole.done && !whole.rejected) {
        const std::string& c = whole.content;
        const LineResult accepted = lineCheck(c, splits, limits.maxLineLength);
        FUZZ_CHECK(!accepted.bare && !accepted.tooLong);
        // Only CRLF line ends, and a complete last line.
        for (std::size_t i = 0; i < c.size(); ++i) {
            if (c[i] == '\r')
                FUZZ_CHECK(i + 1 < c.size() && c[i + 1] == '\n');
            if (c[i] == '\n')
                FUZZ_CHECK(i > 0 && c[i - 1] == '\r');
        }
        FUZZ_CHECK(c.empty() || (c.size() >= 2 && c.substr(c.size() - 2) == "\r\n"));
        // What we store, sent on again by dot-stuffing, is the same message and ends where
        // its terminator is - nothing hidden in it can end the data early.
        std::string resent = stuff(c) + ".\r\nRSET\r\n";
        Run again = feedAll(resent, {}, roomyLimits());
        FUZZ_CHECK(again.done);
        FUZZ_CHECK(again.consumed == resent.size() - 6);
        FUZZ_CHECK(again.content == c);
    }
    return 0;
}
