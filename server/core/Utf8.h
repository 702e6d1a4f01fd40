// UTF-8 well-formedness (RFC 3629 4) and byte-wise ASCII case folding, for RFC 6531/6532
// addresses and header fields: a local part is compared byte for byte except that ASCII
// letters may be folded (as Postfix does); non-ASCII octets are never changed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace postern::core {

// Length (2..4) of the well-formed multi-octet UTF-8 sequence starting at s[pos]; 0 if the
// octet there is ASCII or starts an ill-formed sequence: overlong forms (C0, C1, E0 80..9F,
// F0 80..8F), UTF-16 surrogates (ED A0..BF), code points above U+10FFFF (F4 90.., F5..FF),
// stray continuation octets and truncated sequences all give 0.
std::size_t utf8SequenceLength(std::string_view s, std::size_t pos);

// True if every octet sequence is well-formed UTF-8 (ASCII included).
bool isValidUtf8(std::string_view s);

// True if no octet is above 127.
bool isAscii(std::string_view s);

// A-Z -> a-z, every other octet (UTF-8 included) unchanged.
std::string asciiLower(std::string_view s);

// True if well-formed UTF-8 `s` holds a character that directory string matching drops or
// reads as a space (RFC 4518 2.2: controls, format characters such as U+00AD SOFT HYPHEN
// and U+200B ZERO WIDTH SPACE, variation selectors, U+FFFC, and every space or line/
// paragraph separator such as U+00A0 and U+3000), ASCII space and controls included. An
// LDAP directory finds "alice" for "al<U+00AD>ice" or "alice<U+00A0>": no login name holds
// one. False for ill-formed input (checked apart).
bool hasInsignificantCharacters(std::string_view s);

}  // namespace postern::core
