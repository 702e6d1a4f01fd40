#include "mtasts/Fetcher.h"

#include "core/Text.h"
#include "core/Utf8.h"

#include <Poco/Exception.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <stdexcept>

namespace postern::mtasts {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t MaxHeadSize = 16 * 1024;

std::string sslError() {
    unsigned long e = ::ERR_get_error();
    if (!e) return "TLS error";
    char buf[256];
    ::ERR_error_string_n(e, buf, sizeof buf);
    ::ERR_clear_error();
    return buf;
}

FetchResult failed(std::string why) {
    FetchResult r;
    r.error = std::move(why);
    return r;
}

Poco::Timespan span(std::chrono::milliseconds ms) {
    return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(std::max<long long>(1, ms.count())) * 1000);
}

}  // namespace

FetchResult parseHttpResponse(const std::string& response, std::size_t maxSize) {
    auto headEnd = response.find("\r\n\r\n");
    std::size_t sepLen = 4;
    if (headEnd == std::string::npos) {
        headEnd = response.find("\n\n");
        sepLen = 2;
    }
    if (headEnd == std::string::npos) return failed("incomplete HTTP response");
    std::string head = response.substr(0, headEnd);
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos <= head.size()) {
        auto nl = head.find('\n', pos);
        std::string line = head.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    // "HTTP/1.x 200 OK"
    const std::string& status = lines.front();
    if (status.rfind("HTTP/", 0) != 0) return failed("not an HTTP response");
    auto sp = status.find(' ');
    if (sp == std::string::npos || status.size() < sp + 4) return failed("malformed HTTP status line");
    std::string code = status.substr(sp + 1, 3);
    if (code != "200") {
        if (code[0] == '3') return failed("HTTP " + code + " (redirects are not followed, RFC 8461 3.3)");
        return failed("HTTP " + code);
    }
    std::string contentType;
    long long contentLength = -1;
    bool chunked = false;
    for (std::size_t i = 1; i < lines.size(); ++i) {
        auto colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        std::string name = core::asciiLower(core::trimBlanks(lines[i].substr(0, colon)));
        std::string value(core::trimBlanks(lines[i].substr(colon + 1)));
        if (name == "content-type") contentType = core::asciiLower(value);
        else if (name == "transfer-encoding") chunked = core::asciiLower(value).find("chunked") != std::string::npos;
        else if (name == "content-length") {
            if (value.empty() || value.size() > 18 ||
                !std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); }))
                return failed("malformed Content-Length");
            contentLength = std::stoll(value);
        }
    }
    // RFC 8461 3.2: media type "text/plain" (parameters such as charset allowed).
    std::string mediaType(core::trimBlanks(std::string_view(contentType).substr(0, contentType.find(';'))));
    if (mediaType != "text/plain") return failed("Content-Type is not text/plain");
    std::string body = response.substr(headEnd + sepLen);
    if (chunked) {
        std::string decoded;
        std::size_t p = 0;
        while (true) {
            auto nl = body.find("\r\n", p);
            if (nl == std::string::npos) return failed("malformed chunked body");
            std::string sizeText = body.substr(p, nl - p);
            sizeText = sizeText.substr(0, sizeText.find(';'));
            if (sizeText.empty() || sizeText.size() > 8 ||
                !std::all_of(sizeText.begin(), sizeText.end(), [](unsigned char c) { return std::isxdigit(c); }))
                return failed("malformed chunk size");
            std::size_t n = std::stoul(sizeText, nullptr, 16);
            p = nl + 2;
            if (n == 0) break;
            if (decoded.size() + n > maxSize) return failed("policy larger than " + std::to_string(maxSize) + " bytes");
            if (body.size() < p + n + 2) return failed("truncated chunked body");
            decoded.append(body, p, n);
            p += n + 2;
        }
        body = std::move(decoded);
    } else if (contentLength >= 0) {
        if (static_cast<unsigned long long>(contentLength) > maxSize)
            return failed("policy larger than " + std::to_string(maxSize) + " bytes");
        if (body.size() < static_cast<std::size_t>(contentLength)) return failed("truncated body");
        body.resize(static_cast<std::size_t>(contentLength));
    }
    if (body.size() > maxSize) return failed("policy larger than " + std::to_string(maxSize) + " bytes");
    FetchResult r;
    r.ok = true;
    r.body = std::move(body);
    return r;
}

struct Fetcher::Tls {
    SSL_CTX* ctx = nullptr;
    ~Tls() {
        if (ctx) ::SSL_CTX_free(ctx);
    }
};

Fetcher::Fetcher(FetchSettings settings, HostResolver resolve)
    : settings_(std::move(settings)), resolve_(std::move(resolve)), tls_(std::make_unique<Tls>()) {
    tls_->ctx = ::SSL_CTX_new(TLS_client_method());
    if (!tls_->ctx) throw std::runtime_error("MTA-STS: cannot create a TLS context: " + sslError());
    ::SSL_CTX_set_min_proto_version(tls_->ctx, TLS1_2_VERSION);
    ::SSL_CTX_set_verify(tls_->ctx, SSL_VERIFY_PEER, nullptr);
    int ok = settings_.caFile.empty() ? ::SSL_CTX_set_default_verify_paths(tls_->ctx)
                                      : ::SSL_CTX_load_verify_locations(tls_->ctx, settings_.caFile.c_str(), nullptr);
    if (ok != 1)
        throw std::runtime_error("delivery.mta_sts.ca_file " + settings_.caFile + ": cannot load: " + sslError());
}

Fetcher::~Fetcher() = default;

FetchResult Fetcher::fetch(const std::string& domain) const {
    const auto deadline = Clock::now() + settings_.timeout;
    auto left = [&] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    };
    const std::string host = "mta-sts." + domain;
    std::string error;
    std::vector<Poco::Net::IPAddress> addresses = resolve_(host, error);
    if (addresses.empty()) return failed(error.empty() ? "no address for " + host : error);
    std::string lastError;
    for (const auto& ip : addresses) {
        if (left().count() <= 0) return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
        Poco::Net::StreamSocket socket;
        try {
            socket.connect(Poco::Net::SocketAddress(ip, settings_.port), span(left()));
            socket.setNoDelay(true);
        } catch (const Poco::Exception& e) {
            lastError = "connect to " + host + "[" + ip.toString() + "]:" + std::to_string(settings_.port) +
                        " failed: " + e.displayText();
            continue;
        }
        SSL* ssl = ::SSL_new(tls_->ctx);
        if (!ssl) return failed("TLS: " + sslError());
        struct Free {
            SSL* s;
            ~Free() { ::SSL_free(s); }
        } freeSsl{ssl};
        ::SSL_set_tlsext_host_name(ssl, host.c_str());
        ::SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (::SSL_set1_host(ssl, host.c_str()) != 1) return failed("TLS: bad host name " + host);
        ::SSL_set_fd(ssl, socket.impl()->sockfd());
        auto io = [&]() -> bool {
            auto l = left();
            if (l.count() <= 0) return false;
            socket.setReceiveTimeout(span(l));
            socket.setSendTimeout(span(l));
            return true;
        };
        if (!io()) return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
        errno = 0;
        if (::SSL_connect(ssl) != 1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
            if (left().count() <= 0)
                return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
            // The next address may serve the policy (review finding: a broken path to the
            // first one, say its AAAA, ended the fetch); every one is verified the same way.
            long v = ::SSL_get_verify_result(ssl);
            lastError = (v != X509_V_OK ? "certificate of " + host + " not valid: " + ::X509_verify_cert_error_string(v)
                                        : "TLS handshake with " + host + " failed: " + sslError()) +
                        " (" + ip.toString() + ")";
            continue;
        }
        std::string request = "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: " + host +
                               "\r\nUser-Agent: postern\r\nAccept: text/plain\r\nConnection: close\r\n\r\n";
        if (!io() || ::SSL_write(ssl, request.data(), static_cast<int>(request.size())) !=
                         static_cast<int>(request.size()))
            return failed("sending the request to " + host + " failed");
        std::string response;
        const std::size_t limit = MaxHeadSize + settings_.maxSize + 64;  // head + body (+ chunk framing)
        char buf[8192];
        bool cleanClose = false;  // close_notify seen: the body cannot have been cut short
        while (true) {
            if (!io()) return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
            errno = 0;
            int n = ::SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) {
                const int saved = errno;
                int err = ::SSL_get_error(ssl, n);
                if (saved == EAGAIN || saved == EWOULDBLOCK)  // SO_RCVTIMEO: the deadline passed
                    return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
                if (err == SSL_ERROR_ZERO_RETURN) {
                    cleanClose = true;
                    break;
                }
                // A peer that closes without close_notify (common with HTTP/1.0): the body
                // must then be delimited by Content-Length (or chunked), checked below.
                if (err == SSL_ERROR_SYSCALL && ::ERR_peek_error() == 0 && errno == 0) break;
                if (left().count() <= 0)
                    return failed("timeout after " + std::to_string(settings_.timeout.count()) + "ms");
                ::ERR_clear_error();
                if (!response.empty() && err == SSL_ERROR_SSL) break;  // unexpected EOF (OpenSSL 3)
                return failed("reading from " + host + " failed");
            }
            response.append(buf, static_cast<std::size_t>(n));
            if (response.size() > limit)
                return failed("policy larger than " + std::to_string(settings_.maxSize) + " bytes");
        }
        ::SSL_shutdown(ssl);
        if (!cleanClose) {
            // Without close_notify a truncation (by anyone on the path) is invisible unless
            // the response says how long it is.
            const std::string head = core::asciiLower(response.substr(0, response.find("\r\n\r\n")));
            if (head.find("\ncontent-length:") == std::string::npos &&
                head.find("\ntransfer-encoding:") == std::string::npos)
                return failed("connection closed without close_notify and without Content-Length");
        }
        return parseHttpResponse(response, settings_.maxSize);
    }
    return failed(lastError);
}

}  // namespace postern::mtasts
