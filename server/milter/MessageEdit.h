// The message as a milter sees it: split into header fields and body, the milter's
// modification actions applied in the order they arrive (Postfix's cleanup order), and
// joined again. Pure: strings in, strings out.
#pragma once

#include "core/MilterPort.h"
#include "milter/MilterProtocol.h"

#include <string>
#include <string_view>

namespace postern::milter {

struct MessageParts {
    // name as stored (blanks before the colon included), value (after ':', folding CRLF kept)
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;                                          // CRLF lines
    bool hasSeparator = false;                                 // an empty line ends the header
    bool changed = false;
};

// Splits a message (CRLF lines) into header fields and body. A line in the header
// section that is neither a field nor a continuation starts the body.
MessageParts splitMessage(std::string_view raw);
// The field name of a stored one: without the blanks the obsolete syntax allows before the
// colon ("X-Old :" is field X-Old: RFC 5322 4.5), as milters are sent it and matched.
std::string_view headerName(std::string_view stored);
// The message again: unchanged fields byte for byte.
std::string joinMessage(const MessageParts& m);
// The header value as Sendmail and Postfix pass it to a milter without HDR_LEADSPC: one
// leading space removed.
std::string_view valueForMilter(std::string_view rawValue);
// Applies one modification reply (AddHeader ... Quarantine); `bodyStarted` tells
// ReplBody whether this is the first chunk (the body is replaced, then appended to;
// the caller makes its line ends CRLF with toCrlf once every chunk is in).
void applyModification(const Reply& r, MessageParts& m, core::MilterMessage& envelope, bool& bodyStarted,
                       bool leadSpace = false);
// Bare LF (or CR) line ends -> CRLF.
std::string toCrlf(std::string_view s);

}  // namespace postern::milter
