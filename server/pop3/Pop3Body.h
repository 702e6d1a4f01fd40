// The multi-line body of a RETR or TOP reply (RFC 1939 7), produced block by block from a
// message stream: a large message is never held in memory whole.
#pragma once

#include "core/MaildropService.h"

#include <cstdint>
#include <optional>
#include <string>

namespace postern::pop3 {

class Pop3Body {
public:
    enum class Status {
        More,    // `out` holds the next part; call again
        Done,    // `out` holds the last part, ".\r\n" included
        Failed,  // the store could not read on: the reply cannot be completed (the
                 // connection must close; "+OK" was sent already)
    };

    // RETR: `topLines` empty. TOP: the header, the empty line after it and that many lines
    // of the body.
    Pop3Body(core::MessageStreamPtr stream, std::optional<std::uint32_t> topLines);

    // The next part of the reply, dot-stuffed (RFC 1939 3), replacing what `out` held.
    Status next(std::string& out);

private:
    void stuff(std::string_view block, std::string& out);
    bool top() const { return linesLeft_.has_value(); }  // TOP, not RETR

    core::MessageStreamPtr stream_;
    std::optional<std::uint32_t> linesLeft_;  // TOP, once in the body: lines still to send
    bool inBody_ = false;
    bool ended_ = false;     // TOP has all it needs, or the stream ended
    bool lineStart_ = true;  // the next octet starts a line
    // The last four octets seen in the header ("\r\n" before the first: a message that
    // starts with an empty line has an empty header), to find the CRLF CRLF ending it.
    std::uint32_t window_ = ('\r' << 8) | '\n';
    char last_[2] = {'\0', '\0'};  // the last two octets sent (the final CRLF check)
    bool any_ = false;             // any octet of the message sent
    std::string block_;
};

}  // namespace postern::pop3
