#include "net/ProxyProtocol.h"

#include "net/LineChannel.h"

#include "core/Network.h"

#include <Poco/Exception.h>
#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace postern::net {

namespace {

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

ProxyParseResult fail(std::string reason) { return ProxyError{std::move(reason)}; }

std::string hexByte(unsigned v) {
    static const char* digits = "0123456789abcdef";
    std::string s = "0x";
    s += digits[(v >> 4) & 0xF];
    s += digits[v & 0xF];
    return s;
}

std::uint16_t be16(const unsigned char* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
std::uint32_t be32(const unsigned char* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}


// Addresses (spec 2.1: IPv4 "exactly 4 integers in the range [0..255] ... separated by exactly
// one dot", no heading zeroes; IPv6 hex groups as inet_ntop writes them, no zone id) are read by
// core::parseIpv4 / core::parseIpv6, the same strict parsers the trust lists use; ports by
// core::parseDecimal (spec 2.1: no heading zeroes, "to avoid any possible confusion with octal").
using core::parseDecimal;
using core::parseIpv4;
using core::parseIpv6;

// ---------------------------------------------------------------------------------------
// Version 1 (spec 2.1)
// ---------------------------------------------------------------------------------------

constexpr std::string_view kV1Prefix = "PROXY ";
// "PROXY UNKNOWN\r\n": no v1 header is shorter, so asking for this many is always safe.
constexpr std::size_t kV1MinLength = 15;

bool isPrefixOf(std::string_view partial, std::string_view word) {
    return partial.size() <= word.size() && word.substr(0, partial.size()) == partial;
}

// Checks a v1 line without its CRLF. complete=false: the line is still arriving; only the
// parts already complete are judged (so a valid prefix never fails). On success with
// complete=true, fills *out.
std::optional<std::string> checkV1(std::string_view line, bool complete, ProxyHeader* out) {
    if (line.size() < kV1Prefix.size()) {
        if (!isPrefixOf(line, kV1Prefix)) return "v1: bad signature";
        return complete ? std::optional<std::string>("v1: truncated line") : std::nullopt;
    }
    if (line.substr(0, kV1Prefix.size()) != kV1Prefix) return "v1: bad signature";
    std::string_view rest = line.substr(kV1Prefix.size());
    std::size_t sp = rest.find(' ');
    std::string_view proto = rest.substr(0, sp);
    bool protoComplete = complete || sp != std::string_view::npos;
    if (!protoComplete) {
        if (isPrefixOf(proto, "TCP4") || isPrefixOf(proto, "TCP6") || isPrefixOf(proto, "UNKNOWN")) return std::nullopt;
        return "v1: bad protocol";
    }
    if (proto == "UNKNOWN") {
        // 2.1: "the receiver must ignore anything presented before the CRLF"; the
        // connection's own endpoints apply.
        if (complete && out) {
            out->version = ProxyVersion::V1;
            out->command = ProxyCommand::Proxy;
            out->family = ProxyFamily::Unspec;
            out->transport = ProxyTransport::Unspec;
            out->local = true;
        }
        return std::nullopt;
    }
    const bool v6 = proto == "TCP6";
    if (proto != "TCP4" && !v6) return "v1: bad protocol";
    if (sp == std::string_view::npos) return "v1: missing addresses";

    // 2.1: src SP dst SP sport SP dport, "exactly one space" between fields.
    std::string_view fields = rest.substr(sp + 1);
    std::array<std::string_view, 4> tok;
    std::size_t n = 0;
    std::size_t pos = 0;
    for (;;) {
        std::size_t next = fields.find(' ', pos);
        bool tokComplete = next != std::string_view::npos || complete;
        std::string_view t = fields.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
        if (n >= 4) return "v1: too many fields";
        if (tokComplete && t.empty()) return "v1: empty field";
        if (tokComplete) {
            bool ok = n < 2 ? (v6 ? parseIpv6(t).has_value() : parseIpv4(t).has_value())
                            : parseDecimal(t, 65535).has_value();
            if (!ok) return n < 2 ? "v1: bad address" : "v1: bad port";
        }
        tok[n++] = t;
        if (next == std::string_view::npos) break;
        pos = next + 1;
    }
    if (!complete) return std::nullopt;
    if (n != 4) return "v1: missing fields";
    if (out) {
        auto src = v6 ? parseIpv6(tok[0]) : parseIpv4(tok[0]);
        auto dst = v6 ? parseIpv6(tok[1]) : parseIpv4(tok[1]);
        out->version = ProxyVersion::V1;
        out->command = ProxyCommand::Proxy;
        out->family = v6 ? ProxyFamily::Inet6 : ProxyFamily::Inet;
        out->transport = ProxyTransport::Stream;
        out->local = false;
        out->source = Poco::Net::SocketAddress(*src, static_cast<std::uint16_t>(*parseDecimal(tok[2], 65535)));
        out->destination = Poco::Net::SocketAddress(*dst, static_cast<std::uint16_t>(*parseDecimal(tok[3], 65535)));
    }
    return std::nullopt;
}

ProxyParseResult parseV1(const char* data, std::size_t size) {
    const std::size_t limit = std::min(size, kProxyV1MaxLength);
    for (std::size_t i = 0; i < limit; ++i) {
        const char c = data[i];
        // 2.1: "must not tolerate a single CR or LF character to end the line".
        if (c == '\n') return fail("v1: LF without CR");
        if (c != '\r') continue;
        if (i + 2 > kProxyV1MaxLength) return fail("v1: no CRLF within 107 bytes");
        if (i + 1 >= size) {
            if (auto err = checkV1({data, i}, false, nullptr)) return fail(*err);
            return ProxyNeedMore{i + 2};
        }
        if (data[i + 1] != '\n') return fail("v1: CR without LF");
        ProxyHeader h;
        if (auto err = checkV1({data, i}, true, &h)) return fail(*err);
        return ProxyParsed{i + 2, std::move(h)};
    }
    // 2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver
    // should declare the line invalid."
    if (size >= kProxyV1MaxLength) return fail("v1: no CRLF within 107 bytes");
    if (auto err = checkV1({data, size}, false, nullptr)) return fail(*err);
    return ProxyNeedMore{std::max(size + 1, kV1MinLength)};
}

// ---------------------------------------------------------------------------------------
// Version 2 (spec 2.2)
// ---------------------------------------------------------------------------------------

constexpr unsigned char kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

constexpr unsigned char kTypeAlpn = 0x01;
constexpr unsigned char kTypeAuthority = 0x02;
constexpr unsigned char kTypeCrc32c = 0x03;
constexpr unsigned char kTypeNoop = 0x04;
constexpr unsigned char kTypeUniqueId = 0x05;
constexpr unsigned char kTypeSsl = 0x20;
constexpr unsigned char kSubtypeSslVersion = 0x21;
constexpr unsigned char kSubtypeSslCn = 0x22;
constexpr unsigned char kSubtypeSslCipher = 0x23;
constexpr unsigned char kSubtypeSslSigAlg = 0x24;
constexpr unsigned char kSubtypeSslKeyAlg = 0x25;
constexpr unsigned char kTypeNetns = 0x30;
constexpr std::size_t kMaxUniqueId = 128;  // 2.2.5: "up to 128 bytes"

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), RFC 4960 Appendix B.
std::uint32_t crc32c(const unsigned char* p, std::size_t n) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t crc = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

// Walks TLVs in [p, end). Every TLV must fit: a length running past `end` or 1-2 stray
// bytes at the end mean a malformed header (we interpret TLVs, 2.2, so we do not guess).
template <typename Fn>
std::optional<std::string> walkTlvs(const unsigned char* p, const unsigned char* end, const char* what, Fn&& fn) {
    while (p < end) {
        if (end - p < 3) return std::string(what) + ": truncated TLV";
        const unsigned char type = p[0];
        const std::size_t len = be16(p + 1);
        p += 3;
        if (len > static_cast<std::size_t>(end - p)) return std::string(what) + ": TLV " + hexByte(type) + " overruns";
        if (auto err = fn(type, p, len)) return err;
        p += len;
    }
    return std::nullopt;
}

std::optional<std::string> parseSsl(const unsigned char* v, std::size_t len, ProxySslInfo& ssl) {
    // 2.2.6: struct pp2_tlv_ssl { uint8_t client; uint32_t verify; struct pp2_tlv sub_tlv[0]; }
    if (len < 5) return "v2: SSL TLV shorter than 5 bytes";
    ssl.client = v[0];
    ssl.verify = be32(v + 1);
    unsigned seen = 0;
    return walkTlvs(v + 5, v + len, "v2 SSL", [&](unsigned char type, const unsigned char* s, std::size_t n) -> std::optional<std::string> {
        std::string* field = nullptr;
        switch (type) {
            case kSubtypeSslVersion: field = &ssl.version; break;
            case kSubtypeSslCn: field = &ssl.commonName; break;
            case kSubtypeSslCipher: field = &ssl.cipher; break;
            case kSubtypeSslSigAlg: field = &ssl.sigAlg; break;
            case kSubtypeSslKeyAlg: field = &ssl.keyAlg; break;
            default: return std::nullopt;  // unknown sub-TLV: skipped
        }
        // Two values for one field is ambiguous: fail closed.
        const unsigned bit = 1u << (type - kSubtypeSslVersion);
        if (seen & bit) return "v2: duplicate SSL sub-TLV " + hexByte(type);
        seen |= bit;
        field->assign(reinterpret_cast<const char*>(s), n);
        return std::nullopt;
    });
}

ProxyParseResult parseV2(const unsigned char* d, std::size_t size, std::size_t maxLength) {
    // 2.2: the 12-byte signature, checked byte by byte so a wrong prefix fails at once.
    const std::size_t sigLen = std::min(size, sizeof kV2Signature);
    if (std::memcmp(d, kV2Signature, sigLen) != 0) return fail("v2: bad signature");
    // 13th byte: version (high nibble) "must always be sent as \x2 and the receiver must
    // only accept this value"; command (low nibble) LOCAL or PROXY, "receivers must drop
    // connections presenting unexpected values here".
    if (size > 12) {
        if ((d[12] >> 4) != 0x2) return fail("v2: bad version " + hexByte(d[12] >> 4));
        if ((d[12] & 0xF) > 0x1) return fail("v2: bad command " + hexByte(d[12] & 0xF));
    }
    // 14th byte: family 0..3 and protocol 0..2; other values "must be rejected as invalid
    // by receivers". Checked for LOCAL too (the family is then ignored, but invalid).
    if (size > 13) {
        if ((d[13] >> 4) > 0x3) return fail("v2: bad address family " + hexByte(d[13] >> 4));
        if ((d[13] & 0xF) > 0x2) return fail("v2: bad transport protocol " + hexByte(d[13] & 0xF));
    }
    if (size < kProxyV2FixedLength) return ProxyNeedMore{kProxyV2FixedLength};

    // 15th-16th bytes: length of what follows; "the length of the protocol header in bytes
    // is always exactly 16 + this value". Our cap refuses before we wait for the bytes.
    const std::size_t len = be16(d + 14);
    if (len > maxLength) return fail("v2: length " + std::to_string(len) + " above cap " + std::to_string(maxLength));
    const std::size_t total = kProxyV2FixedLength + len;
    // 2.2: "The receiver must not start to parse an address before the whole address block
    // is received."
    if (size < total) return ProxyNeedMore{total};

    ProxyHeader h;
    h.version = ProxyVersion::V2;
    h.command = (d[12] & 0xF) == 0x1 ? ProxyCommand::Proxy : ProxyCommand::Local;
    static constexpr ProxyFamily families[] = {ProxyFamily::Unspec, ProxyFamily::Inet, ProxyFamily::Inet6, ProxyFamily::Unix};
    static constexpr ProxyTransport transports[] = {ProxyTransport::Unspec, ProxyTransport::Stream, ProxyTransport::Dgram};
    h.family = families[d[13] >> 4];
    h.transport = transports[d[13] & 0xF];
    h.local = true;

    // 2.2 LOCAL: "the receiver must accept this connection as valid and must use the real
    // connection endpoints and discard the protocol block including the family".
    if (h.command == ProxyCommand::Local) return ProxyParsed{total, std::move(h)};

    // Address block size by family (2.2): INET 12, INET6 36, UNIX 216, UNSPEC none.
    std::size_t addrLen = 0;
    switch (h.family) {
        case ProxyFamily::Unspec: addrLen = 0; break;
        case ProxyFamily::Inet: addrLen = 12; break;
        case ProxyFamily::Inet6: addrLen = 36; break;
        case ProxyFamily::Unix: addrLen = 216; break;
    }
    if (h.family != ProxyFamily::Unspec && h.transport == ProxyTransport::Unspec) {
        // A known family with an UNSPEC protocol (0x10/0x20/0x30) is not among the
        // expected bytes of 2.2 and gives no layout for the block: "the receiver should
        // ignore address information" -> keep the socket's endpoints, skip the rest.
        return ProxyParsed{total, std::move(h)};
    }
    if (len < addrLen) return fail("v2: address block shorter than the family requires");

    const unsigned char* a = d + kProxyV2FixedLength;
    if (h.transport == ProxyTransport::Stream && (h.family == ProxyFamily::Inet || h.family == ProxyFamily::Inet6)) {
        const std::size_t ipLen = h.family == ProxyFamily::Inet ? 4 : 16;
        h.source = Poco::Net::SocketAddress(Poco::Net::IPAddress(a, static_cast<poco_socklen_t>(ipLen)), be16(a + 2 * ipLen));
        h.destination =
            Poco::Net::SocketAddress(Poco::Net::IPAddress(a + ipLen, static_cast<poco_socklen_t>(ipLen)), be16(a + 2 * ipLen + 2));
        h.local = false;
    }
    // Otherwise (AF_UNSPEC, AF_UNIX, DGRAM): 2.2 "A receiver is not required to implement
    // other ones, provided that it automatically falls back to the UNSPEC mode" -> local.
    // A mail server has no use for a UDP or UNIX peer address.

    // TLVs (2.2) between the address block and the end of the header.
    unsigned seen = 0;  // bit per TLV type we keep: a second one is ambiguous
    const unsigned char* crcValue = nullptr;
    auto once = [&seen](unsigned char type) -> std::optional<std::string> {
        const unsigned bit = 1u << (type == kTypeSsl ? 6 : type);
        if (seen & bit) return "v2: duplicate TLV " + hexByte(type);
        seen |= bit;
        return std::nullopt;
    };
    auto err = walkTlvs(a + addrLen, d + total, "v2", [&](unsigned char type, const unsigned char* v, std::size_t n) -> std::optional<std::string> {
        switch (type) {
            case kTypeAlpn:  // 2.2.1
                if (auto e = once(type)) return e;
                h.alpn.assign(reinterpret_cast<const char*>(v), n);
                return std::nullopt;
            case kTypeAuthority:  // 2.2.2
                if (auto e = once(type)) return e;
                h.authority.assign(reinterpret_cast<const char*>(v), n);
                return std::nullopt;
            case kTypeCrc32c:  // 2.2.3: "a 32-bit number"
                if (auto e = once(type)) return e;
                if (n != 4) return std::string("v2: CRC32C TLV is not 4 bytes");
                crcValue = v;
                return std::nullopt;
            case kTypeUniqueId:  // 2.2.5
                if (auto e = once(type)) return e;
                if (n > kMaxUniqueId) return std::string("v2: UNIQUE_ID longer than 128 bytes");
                h.uniqueId.assign(reinterpret_cast<const char*>(v), n);
                return std::nullopt;
            case kTypeSsl: {  // 2.2.6
                if (auto e = once(type)) return e;
                ProxySslInfo ssl;
                if (auto e = parseSsl(v, n, ssl)) return e;
                h.ssl = std::move(ssl);
                return std::nullopt;
            }
            case kTypeNoop:   // 2.2.4: "should be ignored when parsed"
            case kTypeNetns:  // 2.2.7: we do not use network namespaces
            default:          // "skip over and ignore the TLVs it is not interested in"
                return std::nullopt;
        }
    });
    if (err) return fail(*err);

    // 2.2.3: we support the checksum, so when present it MUST match, computed over the
    // whole header with the checksum field zeroed; a mismatch makes the connection invalid.
    if (crcValue) {
        std::string copy(reinterpret_cast<const char*>(d), total);
        const std::size_t off = static_cast<std::size_t>(crcValue - d);
        std::memset(copy.data() + off, 0, 4);
        if (crc32c(reinterpret_cast<const unsigned char*>(copy.data()), total) != be32(crcValue))
            return fail("v2: CRC32C mismatch");
        h.checksumVerified = true;
    }
    return ProxyParsed{total, std::move(h)};
}

}  // namespace

ProxyParseResult parseProxyHeader(const char* data, std::size_t size, std::size_t maxV2Length) {
    // Section 2.2 "identifying the protocol version": the v2 signature starts with CR, v1
    // with "PROXY"; anything else "is not covered by this specification and the
    // connection must be dropped". The smallest header of either version is 15 bytes.
    if (size == 0) return ProxyNeedMore{kV1MinLength};
    if (data[0] == '\r') return parseV2(reinterpret_cast<const unsigned char*>(data), size, maxV2Length);
    if (data[0] == 'P') return parseV1(data, size);
    return fail("not a PROXY protocol header");
}

// ---------------------------------------------------------------------------------------
// ProxyHeaderReader
// ---------------------------------------------------------------------------------------

namespace {

// Receives exactly n bytes that are known to be waiting (they were just peeked).
bool consumeExactly(Poco::Net::StreamSocket& socket, std::string& into, std::size_t n) {
    std::size_t done = 0;
    char buf[512];
    while (done < n) {
        int want = static_cast<int>(std::min(n - done, sizeof buf));
        int got = socket.receiveBytes(buf, want);
        if (got <= 0) return false;
        into.append(buf, static_cast<std::size_t>(got));
        done += static_cast<std::size_t>(got);
    }
    return true;
}

}  // namespace

ProxyReadResult ProxyHeaderReader::readSocket(Poco::Net::StreamSocket& socket, std::string prefix,
                                              std::chrono::steady_clock::time_point deadline) const {
    ProxyReadResult result;
    // A v2 header is at most 16 + cap bytes, v1 at most 107: peek no more than can matter.
    std::string peek(std::max(kProxyV2FixedLength + maxV2Length_, kProxyV1MaxLength), '\0');
    try {
        for (;;) {
            // Why peek: the sender may put the TLS ClientHello (implicit TLS) or the first
            // command in the same segment as the header. Peeked bytes are parsed together
            // with what we already took; we then take exactly the ones that are header.
            auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                result.status = ProxyReadStatus::Timeout;
                return result;
            }
            socket.setReceiveTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(left.count())));
            const std::size_t room = peek.size() > prefix.size() ? peek.size() - prefix.size() : 1;
            int n = socket.receiveBytes(peek.data(), static_cast<int>(room), MSG_PEEK);
            if (n <= 0) {
                result.status = ProxyReadStatus::Closed;
                return result;
            }
            std::string view = prefix;
            view.append(peek.data(), static_cast<std::size_t>(n));
            ProxyParseResult r = parseProxyHeader(view.data(), view.size(), maxV2Length_);
            if (auto* parsed = std::get_if<ProxyParsed>(&r)) {
                if (!consumeExactly(socket, prefix, parsed->consumed - prefix.size())) {
                    result.status = ProxyReadStatus::Closed;
                    return result;
                }
                result.status = ProxyReadStatus::Ok;
                result.header = std::move(parsed->header);
                return result;
            }
            if (auto* error = std::get_if<ProxyError>(&r)) {
                result.status = ProxyReadStatus::Invalid;
                result.error = std::move(error->reason);
                return result;
            }
            // NeedMore: every peeked byte is a valid prefix of the header, so all of them
            // are header bytes and may be taken; the next peek then blocks for new data
            // instead of returning the same bytes again.
            if (!consumeExactly(socket, prefix, static_cast<std::size_t>(n))) {
                result.status = ProxyReadStatus::Closed;
                return result;
            }
        }
    } catch (const Poco::TimeoutException&) {
        result.status = ProxyReadStatus::Timeout;
    } catch (const Poco::Exception&) {
        result.status = ProxyReadStatus::Closed;
    }
    return result;
}

ProxyReadResult ProxyHeaderReader::read(Poco::Net::StreamSocket& socket, std::chrono::milliseconds timeout) const {
    return readSocket(socket, {}, std::chrono::steady_clock::now() + timeout);
}

ProxyReadResult ProxyHeaderReader::read(LineChannel& channel, std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string prefix;
    if (channel.available() > 0) {
        ProxyParseResult r = parseProxyHeader(channel.data(), channel.available(), maxV2Length_);
        if (auto* parsed = std::get_if<ProxyParsed>(&r)) {
            channel.consume(parsed->consumed);
            return {ProxyReadStatus::Ok, std::move(parsed->header), {}};
        }
        if (auto* error = std::get_if<ProxyError>(&r)) return {ProxyReadStatus::Invalid, {}, std::move(error->reason)};
        // A valid prefix: all of it is header. Take it out of the channel and read the
        // remainder straight from the socket, exactly.
        prefix.assign(channel.data(), channel.available());
        channel.consume(channel.available());
    }
    return readSocket(channel.socket(), std::move(prefix), deadline);
}

}  // namespace postern::net
