// core::rfc5322Date: RFC 5322 3.3 date-time, English names whatever the locale, zone offset.
#include "core/MailDate.h"

#include <boost/test/unit_test.hpp>

#include <clocale>
#include <cstdlib>
#include <ctime>
#include <stdlib.h>
#include <optional>
#include <string>

using postern::core::localUtcOffset;
using postern::core::rfc5322Date;

namespace {

// 2026-11-27 21:37:52 UTC, a Friday.
const auto Fixed = std::chrono::system_clock::time_point(std::chrono::seconds(1795815472));

// Sets TZ for the scope (and restores it).
class ScopedTz {
public:
    explicit ScopedTz(const char* tz) {
        if (const char* old = std::getenv("TZ")) old_ = old;
        ::setenv("TZ", tz, 1);
        ::tzset();
    }
    ~ScopedTz() {
        if (old_) ::setenv("TZ", old_->c_str(), 1);
        else ::unsetenv("TZ");
        ::tzset();
    }

private:
    std::optional<std::string> old_;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(mail_date)

BOOST_AUTO_TEST_CASE(fixed_offsets) {
    BOOST_TEST(rfc5322Date(Fixed, 0) == "Fri, 27 Nov 2026 21:37:52 +0000");
    BOOST_TEST(rfc5322Date(Fixed, 3600) == "Fri, 27 Nov 2026 22:37:52 +0100");
    BOOST_TEST(rfc5322Date(Fixed, -(4 * 3600 + 30 * 60)) == "Fri, 27 Nov 2026 17:07:52 -0430");
    BOOST_TEST(rfc5322Date(Fixed, 14 * 3600) == "Sat, 28 Nov 2026 11:37:52 +1400");  // the day changes too
    // Single-digit day without padding, as RFC1123_FORMAT writes it (RFC 5322: 1*2DIGIT).
    BOOST_TEST(rfc5322Date(std::chrono::system_clock::time_point(std::chrono::seconds(1709305200)), 0) ==
               "Fri, 1 Mar 2024 15:00:00 +0000");
}

BOOST_AUTO_TEST_CASE(local_zone_and_summer_time) {
    {
        ScopedTz tz("UTC");
        BOOST_TEST(rfc5322Date(Fixed) == "Fri, 27 Nov 2026 21:37:52 +0000");
    }
    {
        ScopedTz tz("CET-1CEST,M3.5.0,M10.5.0/3");  // POSIX rule: no zoneinfo files needed
        BOOST_TEST(localUtcOffset(Fixed) == 3600);
        BOOST_TEST(rfc5322Date(Fixed) == "Fri, 27 Nov 2026 22:37:52 +0100");
        // 2026-07-01 12:00:00 UTC: summer time.
        const auto july = std::chrono::system_clock::time_point(std::chrono::seconds(1782907200));
        BOOST_TEST(rfc5322Date(july) == "Wed, 1 Jul 2026 14:00:00 +0200");
    }
    {
        ScopedTz tz("EST5EDT,M3.2.0,M11.1.0");
        BOOST_TEST(rfc5322Date(Fixed) == "Fri, 27 Nov 2026 16:37:52 -0500");
    }
}

// Switches LC_ALL to a German locale: an installed one, or one built with localedef into a
// temporary LOCPATH (the Debian images here ship no locales). False if neither works.
bool germanLocale(const std::string& scratch) {
    for (const char* name : {"de_DE.UTF-8", "de_DE.utf8", "de_DE.ISO-8859-1", "de_DE"})
        if (std::setlocale(LC_ALL, name)) return true;
    const std::string cmd = "localedef -i de_DE -f ISO-8859-1 '" + scratch + "/de_DE.ISO-8859-1' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) return false;
    ::setenv("LOCPATH", scratch.c_str(), 1);
    return std::setlocale(LC_ALL, "de_DE.ISO-8859-1") != nullptr;
}

BOOST_AUTO_TEST_CASE(locale_does_not_change_names) {
    const auto march = std::chrono::system_clock::time_point(std::chrono::seconds(1709305200));
    char dir[] = "/tmp/postern-locale-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(dir));
    const std::string prev = std::setlocale(LC_ALL, nullptr);
    const bool german = germanLocale(dir);
    std::string viaStrftime, got;
    if (german) {
        const std::time_t t = std::chrono::system_clock::to_time_t(march);
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        char buf[64];
        std::strftime(buf, sizeof buf, "%a, %d %b %Y", &tm);
        viaStrftime = buf;
    }
    got = rfc5322Date(march, 3600);
    std::setlocale(LC_ALL, prev.c_str());
    ::unsetenv("LOCPATH");
    std::system(("rm -rf '" + std::string(dir) + "'").c_str());
    if (german) {
        BOOST_TEST(viaStrftime == "Fr, 01 M\xe4r 2024");  // what the old strftime code wrote
    } else {
        BOOST_TEST_MESSAGE("no German locale available (no de_DE, localedef failed): checked under "
                           << prev << " only");
    }
    BOOST_TEST(got == "Fri, 1 Mar 2024 16:00:00 +0100");
}

BOOST_AUTO_TEST_SUITE_END()
