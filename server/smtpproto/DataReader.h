// The SMTP DATA phase: end-of-data detection, dot-unstuffing and content limits
// (RFC 5321 4.1.1.4, 4.5.2, 2.3.8, 4.5.3.1.6/7; SMTP smuggling, CVE-2023-51764/51765/51766).
#pragma once

#include "smtpproto/ReplyCode.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

namespace postern::smtp {

struct DataReaderLimits {
    // Set from SmtpSettings (the smtp.max_* keys, whose one default lives in the key table).
    // smtp.max_message_size: stored octets (after unstuffing).
    std::uint64_t maxMessageSize = 0;
    // smtp.max_line_length: octets per line including CRLF, leading stuffed dot not
    // counted (RFC 5321 4.5.3.1.6: 1000).
    std::size_t maxLineLength = 0;
    // smtp.max_header_size: octets of the header section (before the first empty line).
    std::uint64_t maxHeaderSize = 0;
};

// Sticky results of one DATA phase; final once DataReader::isDone().
struct DataStatus {
    bool sawBareLineEnding = false;  // a CR or LF not part of CRLF (RFC 5321 2.3.8)
    bool sizeExceeded = false;       // more than maxMessageSize octets of content
    bool lineTooLong = false;        // a line longer than maxLineLength
    bool headerTooLong = false;      // header section longer than maxHeaderSize
    std::uint64_t bytes = 0;         // octets of content after unstuffing (counted past limits)
};

// Reads one message after "354". Feed it the raw bytes from the socket as they come; it
// passes the unstuffed content (CRLF line ends kept, the final "." CRLF removed) to the
// sink in as few calls as possible (one per contiguous run, never per byte) and stops
// exactly after the end-of-data marker, so the bytes after it (pipelined commands,
// RFC 2920) stay with the caller.
//
// The end of data is only CRLF "." CRLF (or "." CRLF as the very first line). A bare LF
// or bare CR never counts as a line end: "\n.\n", "\r\n.\n", "\n.\r\n" and "\r.\r" are
// ordinary (rejected) content, not the end - otherwise a message could smuggle a second
// one past a front-end that reads it differently (SMTP smuggling).
//
// Once the message is known to be rejected (rejection() has a value) the sink is no longer
// called, but reading continues to the end of data so the session stays in sync.
// Not thread-safe; one per message. Never throws (unless the sink does).
class DataReader {
public:
    // Receives content; the pointer is only valid during the call.
    using Sink = std::function<void(const char* data, std::size_t size)>;

    explicit DataReader(const DataReaderLimits& limits);

    // Consumes bytes up to and including the end-of-data marker, passing content to
    // `sink`. Returns the number of bytes used: n unless isDone() became true, in which
    // case p + result is the first byte of the next command. After isDone() it returns 0.
    std::size_t feed(const char* p, std::size_t n, const Sink& sink);

    bool isDone() const { return done_; }
    const DataStatus& status() const { return status_; }

    // The 5xx reply to send after the end of data if the message must be refused,
    // else nullopt. Precedence (first that applies):
    //   bare CR/LF      -> 554 5.6.0 Message contains bare CR or LF (RFC 5321 2.3.8)
    //   size            -> 552 5.3.4 Message size exceeds fixed limit (RFC 1870 6.1)
    //   header section  -> 552 5.3.4 Message header section too large
    //   line length     -> 554 5.6.0 Message line too long (RFC 5321 4.5.3.1.6)
    // (500 is not used for line length: after DATA the transaction, not a command, failed.)
    std::optional<Reply> rejection() const;

private:
    void put(const char* data, std::size_t size);
    void endLine();
    void flush();
    bool isRejected() const {
        return status_.sawBareLineEnding || status_.sizeExceeded || status_.lineTooLong || status_.headerTooLong;
    }

    DataReaderLimits limits_;
    const Sink* sink_ = nullptr;  // valid during feed() only
    DataStatus status_;

    // Scanner state carried across feed() calls.
    bool atLineStart_ = true;   // previous octets were CRLF (or nothing yet)
    bool dotHeld_ = false;      // "." at line start, not yet passed on
    bool dotCrHeld_ = false;    // "." CR at line start: LF next ends the data
    bool crPending_ = false;    // a CR was passed on; LF next makes it a line end
    bool done_ = false;

    bool inHeader_ = true;
    std::uint64_t headerSize_ = 0;
    std::size_t lineLength_ = 0;  // stored octets of the current line so far

    // Output coalescing: contiguous input ranges are passed to the sink in one call.
    const char* spanData_ = nullptr;
    std::size_t spanSize_ = 0;
};

}  // namespace postern::smtp
