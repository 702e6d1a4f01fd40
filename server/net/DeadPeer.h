// Noticing a client whose connection died without a close (Wi-Fi lost, a NAT's state
// expired): TCP keepalive probes once the connection has been quiet for half of `after`,
// every eighth of it, four of them; and TCP_USER_TIMEOUT, so that data the client never
// acknowledges is also given up after `after`. A blocked read or write then fails and the
// session ends (for POP3: its maildrop lock is released), instead of waiting out the
// protocol's idle timeout. Linux socket options; elsewhere only SO_KEEPALIVE.
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <chrono>

namespace postern::net {

// `after` of 0: nothing is set. Errors are ignored (the session then relies on its
// idle timeout, as without this).
void noticeDeadPeerAfter(Poco::Net::StreamSocket& socket, std::chrono::milliseconds after);

}  // namespace postern::net
