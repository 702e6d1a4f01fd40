#include "net/DeadPeer.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace postern::net {

void noticeDeadPeerAfter(Poco::Net::StreamSocket& socket, std::chrono::milliseconds after) {
    if (after.count() <= 0) return;
    const int fd = socket.impl()->sockfd();
    if (fd < 0) return;
    const int seconds = static_cast<int>(std::max<long long>(2, after.count() / 1000));
    const int on = 1;
    const int idle = std::max(1, seconds / 2);
    const int interval = std::max(1, seconds / 8);
    const int probes = 4;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
#ifdef TCP_KEEPIDLE
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
#endif
#ifdef TCP_USER_TIMEOUT
    // Keepalive probes only go out while nothing is in flight: a client that vanished just
    // after a reply (unacknowledged) would be retransmitted to for about 15 minutes.
    const unsigned int userTimeout = static_cast<unsigned int>(std::min<long long>(after.count(), 0x7fffffff));
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &userTimeout, sizeof userTimeout);
#endif
}

}  // namespace postern::net
