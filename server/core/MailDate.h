// The one RFC 5322 3.3 date-time formatter (Date:, Received:, DSN date fields).
#pragma once

#include <chrono>
#include <string>

namespace postern::core {

// "Fri, 27 Nov 2026 22:37:52 +0100": English day and month names whatever the locale
// (POCO's formatter, not strftime), the local time and the local zone offset at `t`
// (RFC 5322 3.3: the offset of the local time from UTC).
std::string rfc5322Date(std::chrono::system_clock::time_point t);

// The same with a fixed offset from UTC in seconds (east positive), e.g. 3600 -> "+0100".
std::string rfc5322Date(std::chrono::system_clock::time_point t, int utcOffsetSeconds);

// The local zone's offset from UTC at `t` in seconds (east positive), summer time included.
int localUtcOffset(std::chrono::system_clock::time_point t);

}  // namespace postern::core
