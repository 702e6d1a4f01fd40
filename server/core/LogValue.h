// The one escaping rule for values in operator log lines ("event=auth.fail ip=... user=...").
// Values often come from clients (user names, addresses, HELO names): a space, '=', quote or
// control character in one must never forge another field or another line, or fail2ban and
// log parsers would read an attacker's text as ours.
#pragma once

#include <string>
#include <string_view>

namespace postern::core {

// Returns `value` as one log token: bytes <= 0x20, 0x7f, '"', '\\' and '=' become \xHH;
// at most 128 input bytes are kept ("..." marks a cut); an empty value is "-".
// Bytes >= 0x80 (UTF-8) are kept as they are.
std::string logValue(std::string_view value);

}  // namespace postern::core
