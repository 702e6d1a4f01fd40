// Noticing a client whose connection died without a close (Wi-Fi lost, a NAT's state
// expired): TCP keepalive probes once the connection has been quiet for half of `after`,
// every eighth of it, four of them; and TCP_USER_TIMEOUT, so that data the client does not
// acknowledge for `after` also ends the connection (keepalive probes only go out while
// nothing is in flight). Since Linux 5.11 that includes a receive window a live client keeps
// closed for `after` (it stopped reading). A blocked read or write then fails and the session
// ends (for POP3: its maildrop lock is released), instead of waiting out the protocol's idle
// timeout. Linux socket options; elsewhere only SO_KEEPALIVE.
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <chrono>

namespace postern::net {

// `after` of 0: nothing is set. Errors are ignored (the session then relies on its
// idle timeout, as without this).
void noticeDeadPeerAfter(Poco::Net::StreamSocket& socket, std::chrono::milliseconds after);

}  // namespace postern::net
