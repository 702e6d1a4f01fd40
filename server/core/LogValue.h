// The one escaping rule for values in operator log lines ("event=auth.fail ip=... user=...").
// Values often come from clients (user names, addresses, HELO names): a space, '=', quote or
// control character in one must never forge another field or another line, or fail2ban and
// log parsers would read an attacker's text as ours. Lines are built with core::EventLine
// (core/EventLine.h), which applies these rules to every value.
#pragma once

#include <string>
#include <string_view>

namespace postern::core {

// Returns `value` as one log token: bytes <= 0x20, 0x7f, '"', '\\' and '=' become \xHH;
// at most 128 input bytes are kept ("..." marks a cut); an empty value is "-".
// Well-formed UTF-8 is kept as it is, except the C1 controls (U+0080..U+009F, \xc2\xHH);
// a byte that is not part of a well-formed UTF-8 sequence becomes \xHH.
std::string logValue(std::string_view value);

// The text between the quotes of a quoted log value (key="..."): the same rule, except
// that spaces and '=' are kept (they cannot end the value inside the quotes); at most
// `maxBytes` input bytes ("..." marks a cut); an empty value stays empty.
std::string logQuotedText(std::string_view value, std::size_t maxBytes = 400);

// Undoes both escapes (\xHH -> the byte; a cut's "..." stays). For tests and log readers.
std::string logUnescape(std::string_view escaped);

}  // namespace postern::core
