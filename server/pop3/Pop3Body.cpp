#include "pop3/Pop3Body.h"

#include <utility>

namespace postern::pop3 {

namespace {
constexpr std::uint32_t CrlfCrlf = ('\r' << 24) | ('\n' << 16) | ('\r' << 8) | '\n';
}

Pop3Body::Pop3Body(core::MessageStreamPtr stream, std::optional<std::uint32_t> topLines)
    : stream_(std::move(stream)), linesLeft_(topLines) {}

// RFC 1939 3: a line starting with "." gets another "." in front. A line start is counted
// after any LF (not only CRLF) so a bare LF in a stored message cannot fake the terminator
// for a client that splits on LF.
// RFC 1939 7 (TOP): the header up to and including the first empty line (CRLF CRLF; an
// empty header if the message starts with CRLF; all of it if there is none), then
// `linesLeft_` lines of the body, a line ending at an LF.
void Pop3Body::stuff(std::string_view block, std::string& out) {
    out.reserve(out.size() + block.size() + block.size() / 64 + 8);
    for (char c : block) {
        if (top() && inBody_ && *linesLeft_ == 0) {
            ended_ = true;
            return;
        }
        if (lineStart_ && c == '.') out += '.';
        out += c;
        lineStart_ = c == '\n';
        last_[0] = last_[1];
        last_[1] = c;
        any_ = true;
        if (!top()) continue;
        if (inBody_) {
            if (c == '\n') --*linesLeft_;
        } else {
            window_ = (window_ << 8) | static_cast<unsigned char>(c);
            inBody_ = window_ == CrlfCrlf;
        }
    }
    // TOP n with the body's n-th line ending this block: no need to read on.
    if (top() && inBody_ && *linesLeft_ == 0) ended_ = true;
}

Pop3Body::Status Pop3Body::next(std::string& out) {
    out.clear();
    if (!ended_) {
        if (!stream_->next(block_)) return Status::Failed;
        if (block_.empty())
            ended_ = true;
        else
            stuff(block_, out);
        if (!ended_) return Status::More;
    }
    // Messages are stored with CRLF; one that lacks a final CRLF still needs one before the
    // terminator, or the "." would join its last line.
    if (any_ && !(last_[0] == '\r' && last_[1] == '\n')) out += "\r\n";
    out += ".\r\n";
    stream_.reset();
    return Status::Done;
}

}  // namespace postern::pop3
