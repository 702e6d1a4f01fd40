// HAProxy PROXY protocol (versions 1 and 2, proxy-protocol.txt of 2020/03/05): a pure
// incremental parser, a reader that takes exactly the header off a connection (the TLS
// ClientHello or the first SMTP command that follows stays unread). Who may send one (spec
// section 5: never auto-detect) is a core::NetworkList (listener.<name>.proxy_trusted).
#pragma once

#include <Poco/Net/IPAddress.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace postern::net {

class LineChannel;

// v1 (2.1): the longest line a receiver must accept, CRLF included ("PROXY UNKNOWN" with
// two full IPv6 addresses and ports).
inline constexpr std::size_t kProxyV1MaxLength = 107;
// v2 (2.2): the fixed part (signature, ver/cmd, fam/proto, length).
inline constexpr std::size_t kProxyV2FixedLength = 16;
// v2: our default cap on the length field (address block + TLVs). The field allows 65535;
// the spec (2) wants the header to fit in one 536-byte segment, but TLVs (SSL with a CN,
// UNIQUE_ID up to 128 bytes, AF_UNIX's 216-byte block, cloud TLVs) can exceed that, so we
// accept up to 1024 and refuse anything larger at once, before waiting for its bytes.
inline constexpr std::size_t kProxyV2DefaultMaxLength = 1024;

enum class ProxyVersion { V1, V2 };
enum class ProxyCommand { Local, Proxy };             // v1 is always Proxy
enum class ProxyFamily { Unspec, Inet, Inet6, Unix };  // v1 UNKNOWN is Unspec
enum class ProxyTransport { Unspec, Stream, Dgram };   // v1 TCP4/TCP6 is Stream

// PP2_TYPE_SSL (2.2.6): what the balancer saw of the client's TLS.
struct ProxySslInfo {
    static constexpr std::uint8_t ClientSsl = 0x01;       // PP2_CLIENT_SSL
    static constexpr std::uint8_t ClientCertConn = 0x02;  // PP2_CLIENT_CERT_CONN
    static constexpr std::uint8_t ClientCertSess = 0x04;  // PP2_CLIENT_CERT_SESS

    std::uint8_t client = 0;
    std::uint32_t verify = 1;  // 0 only when a client certificate was presented and verified
    std::string version;       // PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
    std::string cipher;        // PP2_SUBTYPE_SSL_CIPHER
    std::string commonName;    // PP2_SUBTYPE_SSL_CN (client certificate subject CN)
    std::string sigAlg;        // PP2_SUBTYPE_SSL_SIG_ALG
    std::string keyAlg;        // PP2_SUBTYPE_SSL_KEY_ALG

    bool isTls() const { return (client & ClientSsl) != 0; }
    bool hasVerifiedClientCert() const { return (client & (ClientCertConn | ClientCertSess)) != 0 && verify == 0; }
};

// What a valid header says. Every string is untrusted bytes from the wire (escape before
// logging).
struct ProxyHeader {
    ProxyVersion version = ProxyVersion::V1;
    ProxyCommand command = ProxyCommand::Local;
    ProxyFamily family = ProxyFamily::Unspec;
    ProxyTransport transport = ProxyTransport::Unspec;

    // True: the header carries no usable client address, keep the socket's own endpoints
    // (which on a proxied listener are the balancer's). Set for v2 LOCAL (health checks),
    // v1 UNKNOWN, v2 AF_UNSPEC or UNSPEC protocol, and the valid combinations we do not
    // implement (AF_UNIX, DGRAM): spec 2.2 lets a receiver "fall back to the UNSPEC mode"
    // for those. False: source and destination are set.
    bool local = true;
    Poco::Net::SocketAddress source;       // the client
    Poco::Net::SocketAddress destination;  // the address the client connected to

    // v2 TLVs (2.2.1-2.2.6); empty / nullopt when absent. NOOP and NETNS are ignored,
    // unknown types skipped. TLVs are not read for LOCAL (its block is discarded, 2.2).
    std::string alpn;       // PP2_TYPE_ALPN, raw bytes
    std::string authority;  // PP2_TYPE_AUTHORITY (SNI), UTF-8 as sent
    std::string uniqueId;   // PP2_TYPE_UNIQUE_ID, opaque, at most 128 bytes
    std::optional<ProxySslInfo> ssl;
    bool checksumVerified = false;  // a PP2_TYPE_CRC32C TLV was present and matched
};

// The parser's three answers.
struct ProxyNeedMore {
    // Total bytes (from the start) the header has at least; always > the size given.
    // For a valid prefix it never exceeds the real header length, so reading exactly
    // `atLeast - size` more bytes can never take bytes that follow the header.
    std::size_t atLeast;
};
struct ProxyParsed {
    std::size_t consumed;  // header length; bytes after it belong to SMTP/POP3/TLS
    ProxyHeader header;
};
struct ProxyError {
    std::string reason;  // for the log, e.g. "v2: bad command 0x3"
};
using ProxyParseResult = std::variant<ProxyNeedMore, ProxyParsed, ProxyError>;

// Parses a PROXY v1 or v2 header at the start of data[0, size). Pure; thread-safe.
// NeedMore: every byte so far is a valid prefix, call again with more. Parsed: a complete,
// valid header (the caller consumes exactly `consumed` bytes). Error: not a valid header;
// the connection must be closed (spec 2.1: "abort the connection"), never served.
// maxV2Length caps the v2 length field (see kProxyV2DefaultMaxLength).
ProxyParseResult parseProxyHeader(const char* data, std::size_t size,
                                  std::size_t maxV2Length = kProxyV2DefaultMaxLength);

enum class ProxyReadStatus {
    Ok,
    Invalid,  // not a valid header: close without a reply (the peer is a misconfigured balancer)
    Timeout,  // the whole header did not arrive within the timeout
    Closed,   // peer closed or connection error before the header was complete
};

struct ProxyReadResult {
    ProxyReadStatus status = ProxyReadStatus::Closed;
    ProxyHeader header;  // valid only for Ok
    std::string error;   // Invalid: the parser's reason
};

// Reads exactly one PROXY header off a blocking connection, never a byte beyond it.
// Stateless apart from the cap; one instance may be shared by threads.
class ProxyHeaderReader {
public:
    explicit ProxyHeaderReader(std::size_t maxV2Length = kProxyV2DefaultMaxLength) : maxV2Length_(maxV2Length) {}

    // Reads from a plain (not yet TLS) socket: peeks (MSG_PEEK), parses, and consumes only
    // bytes that belong to the header, so an implicit-TLS ClientHello or pipelined command
    // stays in the kernel for whoever reads next. `timeout` bounds the whole header (spec
    // 2 asks for a short one, at least 3 s). Changes the socket's receive timeout.
    ProxyReadResult read(Poco::Net::StreamSocket& socket, std::chrono::milliseconds timeout) const;

    // Same, for a plaintext LineChannel: bytes it already buffered are used first and
    // consumed exactly; whatever follows the header stays buffered for the session. Not
    // for implicit TLS: LineChannel::startTls discards buffered bytes (CVE-2011-0411), so
    // read from the raw socket before creating the channel instead.
    ProxyReadResult read(LineChannel& channel, std::chrono::milliseconds timeout) const;

private:
    ProxyReadResult readSocket(Poco::Net::StreamSocket& socket, std::string prefix,
                               std::chrono::steady_clock::time_point deadline) const;

    std::size_t maxV2Length_;
};

}  // namespace postern::net
