#include "net/LineChannel.h"

#include "core/TlsTimeout.h"

#include <Poco/Net/NetException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/Session.h>
#include <Poco/Timespan.h>

#include <algorithm>
#include <cstring>

#include <openssl/ssl.h>
#include <sys/ioctl.h>

namespace postern::net {

namespace {
Poco::Timespan toTimespan(std::chrono::milliseconds ms) {
    return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000);
}

// What to put in SO_RCVTIMEO / SO_SNDTIMEO for a wait of `ms` (core/TlsTimeout.h).
Poco::Timespan socketTimeout(std::chrono::milliseconds ms, bool tls) {
    return toTimespan(tls ? core::tlsSocketTimeout(ms) : ms);
}
}  // namespace

LineChannel::LineChannel(Poco::Net::StreamSocket socket, std::chrono::milliseconds sendTimeout,
                         std::size_t bufferSize)
    : socket_(std::move(socket)), buf_(bufferSize, '\0') {
    socket_.setNoDelay(true);
    socket_.setSendTimeout(toTimespan(sendTimeout));
}

void LineChannel::setReceiveTimeout(std::chrono::milliseconds timeout) {
    if (timeout == receiveTimeout_) return;
    receiveTimeout_ = Unknown;  // if the call throws
    socket_.setReceiveTimeout(socketTimeout(timeout, tls_));
    receiveTimeout_ = timeout;
}

ReadStatus LineChannel::readMore(std::chrono::milliseconds timeout) {
    if (start_ == end_) {
        start_ = end_ = 0;
    } else if (end_ == buf_.size()) {
        if (start_ > 0) {
            std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
            end_ -= start_;
            start_ = 0;
        } else {
            buf_.resize(buf_.size() * 2);
        }
    }
    // Replies must not wait in our buffer while we block for the next command.
    flush();
    try {
        setReceiveTimeout(timeout);
        int n = socket_.receiveBytes(buf_.data() + end_, static_cast<int>(buf_.size() - end_));
        if (n <= 0) return ReadStatus::Closed;
        end_ += static_cast<std::size_t>(n);
        return ReadStatus::Ok;
    } catch (const Poco::TimeoutException&) {
        return ReadStatus::Timeout;
    } catch (const Poco::Exception&) {
        return ReadStatus::Closed;
    }
}

ReadStatus LineChannel::fill(std::chrono::milliseconds timeout) {
    if (available() > 0) return ReadStatus::Ok;
    return readMore(timeout);
}

ReadStatus LineChannel::readLine(std::string& line, std::size_t maxLength, std::chrono::milliseconds timeout) {
    std::size_t scanned = 0;
    for (;;) {
        const char* p = data();
        const void* lf = std::memchr(p + scanned, '\n', available() - scanned);
        if (lf) {
            std::size_t len = static_cast<std::size_t>(static_cast<const char*>(lf) - p) + 1;
            if (len > maxLength) {
                consume(len);
                return ReadStatus::TooLong;
            }
            std::size_t body = len - 1;
            if (body > 0 && p[body - 1] == '\r') --body;
            line.assign(p, body);
            consume(len);
            return ReadStatus::Ok;
        }
        scanned = available();
        if (scanned >= maxLength) {
            // No line end within the limit: stop here. The rest of the line is neither read
            // nor waited for; the caller answers and ends the session.
            consume(scanned);
            return ReadStatus::TooLong;
        }
        ReadStatus st = readMore(timeout);
        if (st != ReadStatus::Ok) return st;
    }
}

void LineChannel::closeGracefully(std::chrono::milliseconds linger, std::size_t maxBytes) {
    try {
        flush();
        if (!tls_) socket_.shutdownSend();  // TLS: close_notify comes with the socket's close
        const auto deadline = std::chrono::steady_clock::now() + linger;
        std::size_t drained = 0;
        char sink[16 * 1024];
        while (drained < maxBytes) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            setReceiveTimeout(left);
            int n = socket_.receiveBytes(sink, sizeof sink);
            if (n <= 0) break;
            drained += static_cast<std::size_t>(n);
        }
    } catch (...) {
        // timeout, reset or gone: nothing more to do
    }
    start_ = end_ = 0;
}

bool LineChannel::inputWaiting() const {
    if (hasPendingInput()) return true;
    int queued = 0;
    const int fd = socket_.impl()->sockfd();
    return fd >= 0 && ::ioctl(fd, FIONREAD, &queued) == 0 && queued > 0;
}

void LineChannel::write(std::string_view bytes) {
    if (bytes.size() >= FlushAt) {
        // A large reply (a RETR of a big message) goes out from the caller's buffer: no copy
        // of it is made here, and no buffer of its size stays with the session afterwards.
        flush();
        sendAll(bytes);
        return;
    }
    out_.append(bytes);
    if (out_.size() >= FlushAt) flush();
}

void LineChannel::sendAll(std::string_view bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
        const std::size_t chunk = std::min<std::size_t>(bytes.size() - off, 1 << 30);
        int n = socket_.sendBytes(bytes.data() + off, static_cast<int>(chunk));
        if (n <= 0) throw Poco::Net::ConnectionResetException("send failed");
        off += static_cast<std::size_t>(n);
    }
}

void LineChannel::flush() {
    sendAll(out_);
    out_.clear();
}

std::size_t LineChannel::startTls(Poco::Net::Context::Ptr context, std::chrono::milliseconds timeout) {
    flush();
    const std::size_t dropped = end_ - start_;
    // CVE-2011-0411: at this point there must not be any pending plaintext; whatever the
    // client pipelined after STARTTLS/STLS is thrown away, never read as TLS-protected.
    start_ = end_ = 0;
    socket_.setReceiveTimeout(socketTimeout(timeout, true));
    socket_.setSendTimeout(socketTimeout(timeout, true));
    Poco::Net::SecureStreamSocket secure = Poco::Net::SecureStreamSocket::attach(socket_, context);
    socket_ = secure;
    receiveTimeout_ = timeout;  // a new socket object, but the option lives on the descriptor
    tls_ = true;
    return dropped;
}

std::string LineChannel::tlsVersion() {
    if (!tls_) return "";
    try {
        Poco::Net::SecureStreamSocket secure(socket_);
        Poco::Net::Session::Ptr session = secure.currentSession();
        if (!session.isNull() && session->sslSession()) {
            switch (SSL_SESSION_get_protocol_version(session->sslSession())) {
            case TLS1_3_VERSION: return "TLSv1.3";
            case TLS1_2_VERSION: return "TLSv1.2";
            case TLS1_1_VERSION: return "TLSv1.1";
            case TLS1_VERSION: return "TLSv1.0";
            default: break;
            }
        }
    } catch (const Poco::Exception&) {
    }
    return "yes";
}

}  // namespace postern::net
