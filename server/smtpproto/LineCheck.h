// Line ends and line lengths of message content that arrives without dot-stuffing: BDAT
// chunks of a message that is not BODY=BINARYMIME (RFC 3030 3: such content is still
// 7BIT or 8BITMIME, CRLF lines of at most 1000 octets). DATA has the same checks inside
// DataReader, which must also find the end of data; this one only looks.
#pragma once

#include "smtpproto/ReplyCode.h"

#include <cstddef>
#include <optional>
#include <string_view>

namespace postern::smtp {

// Feed it the content in pieces as they come (any split gives the same result), then call
// finish() at the end of the message. Not thread-safe; one per message. Never throws.
class LineCheck {
public:
    // maxLineLength: octets per line including CRLF (smtp.max_line_length; RFC 5321
    // 4.5.3.1.6: 1000).
    explicit LineCheck(std::size_t maxLineLength) : maxLineLength_(maxLineLength) {}

    void feed(std::string_view bytes);
    // The content ends here: a CR it ended with had no LF.
    void finish();

    bool sawBareLineEnding() const { return bare_; }  // a CR or LF not part of CRLF (RFC 5321 2.3.8)
    bool lineTooLong() const { return tooLong_; }     // a line longer than maxLineLength
    // The reply DataReader gives for the same content (bare CR/LF first), else nullopt.
    std::optional<Reply> rejection() const;

private:
    std::size_t maxLineLength_;
    std::size_t line_ = 0;     // octets of the current line so far
    bool crPending_ = false;   // the last octet seen was a CR
    bool bare_ = false;
    bool tooLong_ = false;
};

}  // namespace postern::smtp
