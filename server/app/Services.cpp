#include "app/Services.h"

#include <Poco/Logger.h>
#include <Poco/RandomStream.h>

#include <cstdio>
#include <unistd.h>

namespace postern::app {

std::string Services::nextSessionId() {
    // Process-unique counter mixed with a per-process random prefix so ids from two
    // nodes (or two runs) sharing one log stream do not collide.
    static const std::uint32_t prefix = [] {
        std::uint32_t v = 0;
        Poco::RandomInputStream rnd;
        rnd.read(reinterpret_cast<char*>(&v), sizeof v);
        return v;
    }();
    std::uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
    char buf[32];
    // The counter in full: cut to 24 bits it repeated within a process after 16.7M sessions
    // (a day or two on a busy node), and s=... is how a session's lines are found.
    std::snprintf(buf, sizeof buf, "%06x%06llx", prefix & 0xffffff, static_cast<unsigned long long>(n));
    return buf;
}

}  // namespace postern::app
