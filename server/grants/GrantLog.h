// Log helpers shared by the grant stores (lines are written with core::EventLine).
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace postern::grants {

// "2026-12-05T01:50:00.123456Z" (UTC, microseconds): an expiry in a log line.
inline std::string isoUtc(std::chrono::system_clock::time_point t) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
    long long secs = us / 1000000;
    long long frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        --secs;
    }
    const std::time_t tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

}  // namespace postern::grants
