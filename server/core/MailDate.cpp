#include "core/MailDate.h"

#include <Poco/DateTime.h>
#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Timestamp.h>

#include <cstdlib>
#include <ctime>

namespace postern::core {

int localUtcOffset(std::chrono::system_clock::time_point t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    if (!::localtime_r(&tt, &tm)) return 0;
    return static_cast<int>(tm.tm_gmtoff);
}

std::string rfc5322Date(std::chrono::system_clock::time_point t, int utcOffsetSeconds) {
    // Whole minutes: the zone field has no seconds (a historic LMT offset loses them).
    const int offset = utcOffsetSeconds / 60 * 60;
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    Poco::DateTime local{Poco::Timestamp(static_cast<Poco::Timestamp::TimeVal>(us))};
    local.makeLocal(offset);
    // RFC1123_FORMAT is "%w, %e %b %Y %H:%M:%S %Z"; %Z writes the numeric offset ("+0100",
    // "+0000") for every value but DateTimeFormatter::UTC, which would give obsolete "GMT".
    return Poco::DateTimeFormatter::format(local, Poco::DateTimeFormat::RFC1123_FORMAT, offset);
}

std::string rfc5322Date(std::chrono::system_clock::time_point t) { return rfc5322Date(t, localUtcOffset(t)); }

}  // namespace postern::core
