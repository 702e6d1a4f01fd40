// xtext (RFC 3461 4): the encoding of ENVID, ORCPT and AUTH= values.
//   xtext   = *( xchar / hexchar )
//   xchar   = any ASCII from "!" (33) to "~" (126) except "+" and "="
//   hexchar = "+" followed by two upper-case hexadecimal digits
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::smtp {

// The decoded octets, or nullopt if `text` is not xtext. Lower-case hex digits after "+"
// are accepted too (liberal in what we accept; we always write upper case).
std::optional<std::string> decodeXtext(std::string_view text);

// Any octets -> xtext: xchars as they are, every other octet (and "+", "=") as "+XX".
std::string encodeXtext(std::string_view octets);

// True if every octet is an xchar other than space (printable ASCII 33..126), i.e. the
// value can be shown as is in a report field.
bool isPrintableAscii(std::string_view s);

}  // namespace postern::smtp
