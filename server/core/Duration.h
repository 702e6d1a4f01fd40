// The product's one duration syntax, for every configuration key and command-line option
// that takes a time (the daemon's key table, the PostgreSQL and LDAP plugins, posternctl).
#pragma once

#include <chrono>
#include <string_view>

namespace postern::core {

// "500ms", "30s", "5m", "2h", "1d", or a bare number of seconds ("30" = 30s). Leading and
// trailing blanks (and blanks before the unit) are ignored and the unit is case-insensitive
// ("5M" = 5 minutes); no sign, no fraction. Throws std::invalid_argument with a text
// that quotes the value ("bad duration '5 parsecs': ...") on anything else, and on a value
// too large for milliseconds in 64 bits.
std::chrono::milliseconds parseDuration(std::string_view text);

}  // namespace postern::core
