// The SMTP DATA phase: end-of-data detection and dot-unstuffing (RFC 5321 4.1.1.4, 4.5.2)
// that never treats a bare CR or LF as a line end (RFC 5321 2.3.8; CVE-2023-51764 family).
#include "smtpproto/DataReader.h"

#include <cstring>

namespace postern::smtp {

DataReader::DataReader(const DataReaderLimits& limits) : limits_(limits) {}

std::size_t DataReader::feed(const char* p, std::size_t n, const Sink& sink) {
    sink_ = &sink;
    std::size_t i = 0;
    while (i < n && !done_) {
        if (dotCrHeld_) {
            dotCrHeld_ = false;
            // RFC 5321 4.1.1.4: the data ends with "." CRLF at the start of a line, where
            // the start of a line means after CRLF (or right after the 354 reply).
            if (p[i] == '\n') {
                ++i;
                done_ = true;
                break;
            }
            // "." CR <not LF>: the dot was stuffing (4.5.2) and the CR is bare (2.3.8).
            status_.sawBareLineEnding = true;
            flush();
            put("\r", 1);
            continue;
        }
        if (dotHeld_) {
            dotHeld_ = false;
            if (p[i] == '\r') {
                dotCrHeld_ = true;
                ++i;
            }
            // RFC 5321 4.5.2: a line starting with "." and more characters loses the dot.
            continue;
        }
        if (crPending_) {
            crPending_ = false;
            if (p[i] == '\n') {
                put(p + i, 1);
                ++i;
                endLine();
                continue;
            }
            // RFC 5321 2.3.8: CR may only appear followed by LF.
            status_.sawBareLineEnding = true;
        }
        if (atLineStart_) {
            atLineStart_ = false;
            if (p[i] == '.') {
                dotHeld_ = true;
                ++i;
                continue;
            }
        }

        // Middle of a line: jump to the next CR or LF.
        const char* start = p + i;
        const std::size_t rest = n - i;
        const char* lf = static_cast<const char*>(std::memchr(start, '\n', rest));
        const char* cr = static_cast<const char*>(std::memchr(start, '\r', lf ? static_cast<std::size_t>(lf - start) : rest));
        const char* stop = cr ? cr : lf;
        if (!stop) {
            put(start, rest);
            i = n;
            break;
        }
        put(start, static_cast<std::size_t>(stop - start) + 1);
        i = static_cast<std::size_t>(stop - p) + 1;
        if (*stop == '\r') {
            crPending_ = true;
        } else {
            // A bare LF is content, never a line end: "\n.\n" and "\r\n.\n" must not end
            // the data, or a message could smuggle a second one past a front-end that
            // reads line ends differently (CVE-2023-51764, -51765, -51766). The flag makes
            // the session refuse the whole message.
            status_.sawBareLineEnding = true;
        }
    }
    flush();
    sink_ = nullptr;
    return i;
}

void DataReader::put(const char* data, std::size_t size) {
    status_.bytes += size;
    lineLength_ += size;
    if (status_.bytes > limits_.maxMessageSize)
        status_.sizeExceeded = true;
    // RFC 5321 4.5.3.1.6: 1000 octets per line including CRLF.
    if (lineLength_ > limits_.maxLineLength)
        status_.lineTooLong = true;
    // An empty line (CRLF, 2 octets) ends the header section and is not part of it.
    if (inHeader_ && lineLength_ > 2 && headerSize_ + lineLength_ > limits_.maxHeaderSize)
        status_.headerTooLong = true;

    if (isRejected()) {
        // The message will be refused: stop writing, drop what is pending.
        spanData_ = nullptr;
        spanSize_ = 0;
        return;
    }
    if (spanData_ && spanData_ + spanSize_ == data) {
        spanSize_ += size;
    } else {
        flush();
        spanData_ = data;
        spanSize_ = size;
    }
}

void DataReader::endLine() {
    if (inHeader_) {
        if (lineLength_ == 2) {
            inHeader_ = false;
        } else {
            headerSize_ += lineLength_;
            if (headerSize_ > limits_.maxHeaderSize)
                status_.headerTooLong = true;
        }
    }
    lineLength_ = 0;
    atLineStart_ = true;
}

void DataReader::flush() {
    if (spanSize_ && !isRejected())
        (*sink_)(spanData_, spanSize_);
    spanData_ = nullptr;
    spanSize_ = 0;
}

std::optional<Reply> DataReader::rejection() const {
    if (status_.sawBareLineEnding)
        return replies::bareLineEnding();
    if (status_.sizeExceeded)
        return replies::messageTooBig();
    if (status_.headerTooLong)
        return Reply{552, Enhanced::MessageTooBig, "Message header section too large"};
    if (status_.lineTooLong)
        return replies::lineTooLong();
    return std::nullopt;
}

}  // namespace postern::smtp
