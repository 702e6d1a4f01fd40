// The SO_RCVTIMEO / SO_SNDTIMEO that makes a POCO TLS socket wait `wait`, not twice it.
#pragma once

#include <algorithm>
#include <chrono>

namespace postern::core {

// Over TLS, POCO waits twice per blocked operation: in the blocking recv(2)/send(2) inside
// OpenSSL until the socket's timeout, then, on SSL_ERROR_WANT_READ/WRITE, in poll(2) for the
// socket's timeout again before it throws Poco::TimeoutException. Half of it each way keeps
// a silent TLS peer to the configured timeout (an idle TLS client at an SMTP prompt was held
// 10 minutes instead of 5; a stalled remote MX held a delivery worker twice as long).
inline std::chrono::milliseconds tlsSocketTimeout(std::chrono::milliseconds wait) {
    return std::max(std::chrono::milliseconds(1), (wait + std::chrono::milliseconds(1)) / 2);
}

}  // namespace postern::core
