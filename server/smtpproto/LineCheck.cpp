// RFC 5321 2.3.8 (CR and LF only as CRLF) and 4.5.3.1.6 (line length) for BDAT content.
#include "smtpproto/LineCheck.h"

#include <cstring>

namespace postern::smtp {

void LineCheck::feed(std::string_view bytes) {
    std::size_t i = 0;
    while (i < bytes.size() && !(bare_ && tooLong_)) {
        if (crPending_) {
            crPending_ = false;
            if (bytes[i] == '\n') {
                if (++line_ > maxLineLength_) tooLong_ = true;
                line_ = 0;
                ++i;
                continue;
            }
            bare_ = true;  // CR followed by something else
        }
        // Up to and including the next CR or LF.
        const char* start = bytes.data() + i;
        const std::size_t rest = bytes.size() - i;
        const char* lf = static_cast<const char*>(std::memchr(start, '\n', rest));
        const char* cr = static_cast<const char*>(std::memchr(start, '\r', lf ? static_cast<std::size_t>(lf - start) : rest));
        const char* stop = cr ? cr : lf;
        const std::size_t take = stop ? static_cast<std::size_t>(stop - start) + 1 : rest;
        line_ += take;
        if (line_ > maxLineLength_) tooLong_ = true;
        i += take;
        if (stop == cr && cr) {
            crPending_ = true;
        } else if (stop) {
            bare_ = true;  // LF without CR before it
            line_ = 0;
        }
    }
}

void LineCheck::finish() {
    if (crPending_) bare_ = true;
    crPending_ = false;
}

std::optional<Reply> LineCheck::rejection() const {
    if (bare_) return replies::bareLineEnding();
    if (tooLong_) return replies::lineTooLong();
    return std::nullopt;
}

}  // namespace postern::smtp
