// Buffered socket I/O for one session: line reads with length limits and timeouts,
// raw buffered bytes for DATA, batched writes (replies to a pipelined group go out
// together, RFC 2920), and the switch to TLS (STARTTLS/STLS, implicit TLS).
#pragma once

#include <Poco/Net/Context.h>
#include <Poco/Net/StreamSocket.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace postern::net {

enum class ReadStatus {
    Ok,
    TooLong,  // the line passed the limit: nothing more of it is read (the caller ends the
              // session; a flood without LF is never buffered or waited for)
    Timeout,
    Closed,   // peer closed or connection error
};

// Not thread-safe: owned by one connection thread.
class LineChannel {
public:
    // sendTimeout: SO_SNDTIMEO for the whole session, TLS or not (a session's command or
    // idle timeout, as Postfix's smtpd_timeout bounds writes too): a client that stops
    // reading while we write (a pipelined flood of CAPA/NOOP, a RETR it never reads) ends
    // the session with an exception from flush() instead of holding its thread, and the
    // maildrop lock, for ever. startTls() replaces it by its own timeout.
    LineChannel(Poco::Net::StreamSocket socket, std::chrono::milliseconds sendTimeout,
                std::size_t bufferSize = 16 * 1024);

    // Reads one line ending in LF; `line` gets it without the line end (a CR before
    // the LF is dropped too). maxLength counts the line end.
    ReadStatus readLine(std::string& line, std::size_t maxLength, std::chrono::milliseconds timeout);

    // Makes sure at least one unread byte is buffered (reading if needed).
    ReadStatus fill(std::chrono::milliseconds timeout);
    const char* data() const { return buf_.data() + start_; }
    std::size_t available() const { return end_ - start_; }
    void consume(std::size_t n) { start_ += n; }

    // Queues bytes; they go out at flush() or when the buffer grows large. A write of
    // FlushAt or more (a RETR) goes out at once, after what was queued, from `bytes` itself.
    void write(std::string_view bytes);
    // Sends everything queued. Throws Poco::Exception on a broken connection.
    void flush();
    // Whether write() of `n` more octets sends (rather than only queues).
    bool sendsNow(std::size_t n) const { return n >= FlushAt || out_.size() + n >= FlushAt; }
    // Whether flush() has anything to send.
    bool hasOutput() const { return !out_.empty(); }
    // Ends the session so that the client can read our last reply even while it is still
    // sending: flush, half-close (FIN after the reply), then read and discard what arrives
    // for at most `linger` or `maxBytes`, whichever comes first. Closing a socket with
    // unread input makes the kernel send RST, which can destroy the reply in flight.
    // Never throws.
    void closeGracefully(std::chrono::milliseconds linger, std::size_t maxBytes);
    // True when the client has already sent more input (pipelining): replies can wait.
    bool hasPendingInput() const { return available() > 0; }
    // A whole line is buffered: readLine() returns it without reading.
    bool hasBufferedLine() const { return available() > 0 && std::memchr(data(), '\n', available()) != nullptr; }
    // Input buffered here or already in the kernel's receive queue: the client is still
    // sending (closing now would send an RST; see closeGracefully).
    bool inputWaiting() const;

    // Switches to TLS in server mode. Any plaintext bytes the client sent after the
    // command are discarded first (CVE-2011-0411: they must not be read as if they had
    // come over TLS). Throws Poco::Exception if the handshake fails.
    // Returns how many such plaintext bytes were thrown away (for the log: an injection try).
    std::size_t startTls(Poco::Net::Context::Ptr context, std::chrono::milliseconds timeout);
    bool isTls() const { return tls_; }
    // The negotiated protocol ("TLSv1.3", "TLSv1.2"); "" without TLS; "yes" if unknown.
    std::string tlsVersion();

    // The socket itself: whoever takes it may change its timeouts, so the receive timeout
    // is set again before the next read.
    Poco::Net::StreamSocket& socket() {
        receiveTimeout_ = Unknown;
        return socket_;
    }
    // The socket for those that only look at it (addresses, TLS state, the registry's copy
    // for shutdown): the receive timeout stays known.
    const Poco::Net::StreamSocket& socket() const { return socket_; }

private:
    ReadStatus readMore(std::chrono::milliseconds timeout);
    // SO_RCVTIMEO only when it changes: one setsockopt(2) per read was 8 system calls per
    // message in S1'.
    void setReceiveTimeout(std::chrono::milliseconds timeout);

    void sendAll(std::string_view bytes);  // throws ConnectionResetException when the send fails

    static constexpr std::size_t FlushAt = 64 * 1024;  // replies are buffered up to this much
    static constexpr std::chrono::milliseconds Unknown{-1};
    std::chrono::milliseconds receiveTimeout_ = Unknown;  // as last set on socket_

    Poco::Net::StreamSocket socket_;
    std::string buf_;
    std::size_t start_ = 0;
    std::size_t end_ = 0;
    std::string out_;
    bool tls_ = false;
};

}  // namespace postern::net
