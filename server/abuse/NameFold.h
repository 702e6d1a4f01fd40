// Loose name folding for counters keyed on what a client typed: the spellings a directory
// may take for one name (LDAP caseIgnoreMatch folds case and compatibility forms, RFC 4518;
// Active Directory ignores case and width) are one key, so a guesser cannot get a fresh
// failure budget per spelling ("ａlice", "𝐚lice", "ALICE").
#pragma once

#include <string>
#include <string_view>

namespace postern::abuse {

// A compatibility caseless form of `utf8`: NFKC(toCasefold(NFKD(s))), through libunistring
// (close to Unicode 3.13's compatibility caseless matching, D146, and at least as loose as
// LDAP's caseIgnoreMatch). ASCII is lower-cased; `utf8` itself (unchanged) if it is not
// well-formed UTF-8 or cannot be folded.
std::string foldName(std::string_view utf8);

}  // namespace postern::abuse
