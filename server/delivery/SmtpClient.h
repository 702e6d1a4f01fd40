// The ESMTP client of outbound delivery (RFC 5321): EHLO with HELO fallback, PIPELINING
// (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152), STARTTLS (RFC 3207) by policy,
// AUTH PLAIN/LOGIN (RFC 4954, 4616) for a smarthost, dot-stuffing, 4.5.3.2 timeouts,
// CHUNKING/BINARYMIME (RFC 3030): BDAT when the server offers it.
#pragma once

#include "config/ServerConfig.h"
#include "core/DsnRequest.h"
#include "delivery/Dane.h"
#include "delivery/SmtpReply.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::delivery {

using TlsPolicy = config::TlsPolicy;
using Millis = std::chrono::milliseconds;

struct ClientSettings {
    std::string heloName;
    // The timeouts are set from the delivery.*_timeout keys (DeliveryService); their one
    // default lives in the key table (server/config/ConfigSchema.cpp).
    Millis connectTimeout{};    // delivery.connect_timeout
    Millis greetingTimeout{};   // delivery.greeting_timeout: RFC 5321 4.5.3.2.1
    Millis mailTimeout{};       // delivery.mail_timeout: 4.5.3.2.2 (also EHLO, STARTTLS, AUTH, RSET, QUIT)
    Millis rcptTimeout{};       // delivery.rcpt_timeout: 4.5.3.2.3
    Millis dataTimeout{};       // delivery.data_timeout: 4.5.3.2.4 (354)
    Millis dataBlockTimeout{};  // delivery.data_block_timeout: 4.5.3.2.5 (each block sent)
    Millis dataDoneTimeout{};   // delivery.data_done_timeout: 4.5.3.2.6 (reply to the final dot)
    // delivery.mime_output_conversion: 8-bit MIME parts to a next hop without 8BITMIME go as
    // quoted-printable (MimeDowngrade); false: as they are.
    bool mimeOutputConversion = true;
    Poco::Net::Context::Ptr tlsOpportunistic;  // may / encrypt: no certificate check
    Poco::Net::Context::Ptr tlsVerify;         // verify: chain + host name (may be null)
    Poco::Net::Context::Ptr tlsDane;           // dane: makeDaneContext(), chain checked by TLSA
};

// What a DANE session must match (RFC 7672 3): the host's usable TLSA records and the
// names a DANE-TA(2) chain's leaf may carry, the TLSA base domain first (it is the SNI).
struct DaneTarget {
    std::vector<TlsaRecord> tlsa;
    std::vector<std::string> names;
};

struct Credentials {
    std::string user;
    std::string password;
};

// A queued message file as stored (CRLF line ends, not dot-stuffed).
struct MessageData {
    std::string path;
    // The whole file when the caller loaded it (loadMessage in MessageSource.h): every pass
    // reads memory; else each reads `path`.
    std::shared_ptr<const std::string> content;
    std::uint64_t size = 0;
    bool eightBit = false;  // any octet > 127 (BODY=8BITMIME when offered)
    bool smtpUtf8 = false;    // MAIL ... SMTPUTF8 when the server offers it (RFC 6531 3.4)
    bool requireTls = false;  // MAIL ... REQUIRETLS (RFC 8689 4.2.1; the caller checked the offer)
};

// DSN requests to pass on (RFC 3461 5.2.1): RET/ENVID on MAIL, NOTIFY/ORCPT on each RCPT,
// sent only to a next hop that offers DSN.
struct OutboundDsn {
    core::MessageDsn message;
    std::vector<core::RecipientDsn> recipients;  // parallel to send()'s recipients, or empty
};

// One connection to one remote host. Not thread-safe (one worker owns it). Blocking; every
// wait is bounded by a timeout from ClientSettings. No exception leaves a public method.
class SmtpClient {
public:
    // True if the file holds octets only a BINARYMIME transfer may carry: NUL, or a CR or
    // LF that is not part of CRLF (RFC 3030 3, RFC 5321 2.3.8). false if unreadable.
    static bool needsBinaryMime(const MessageData& message);
    static bool needsBinaryMime(const std::string& path) {
        MessageData m;
        m.path = path;
        return needsBinaryMime(m);
    }

    explicit SmtpClient(const ClientSettings& settings);
    ~SmtpClient();
    SmtpClient(const SmtpClient&) = delete;
    SmtpClient& operator=(const SmtpClient&) = delete;

    // Connects to `address` of MX/host `hostName`, reads the greeting, says EHLO (HELO on
    // a 5xx), negotiates STARTTLS by `policy` (none: never; may: when offered, continue in
    // clear if it is refused; encrypt/verify: required, else failure), says EHLO again
    // and authenticates with `credentials` if given (only over TLS unless policy is none).
    // Positive reply: ready for send(). Otherwise the failure (code 0 = local reason: no
    // connection, timeout, TLS required but missing) and the connection is closed.
    // tlsHandshakeFailed() then tells whether a retry without TLS makes sense ('may').
    // `dane` (with policy Dane): TLS is required and, after the handshake, the server's chain
    // must match one of dane->tlsa (daneCheck), else the session is closed before any mail
    // command (tlsRequirementFailed(), daneFailure()). SNI: dane->names[0], else `hostName`.
    SmtpReply open(const Poco::Net::SocketAddress& address, const std::string& hostName, TlsPolicy policy,
                   const Credentials* credentials, bool tryTls = true, const DaneTarget* dane = nullptr);

    // One mail transaction: MAIL, RCPT for each recipient, DATA, the message, final dot
    // (pipelined when offered). Returns one reply per recipient, in order: positive =
    // delivered (the final-dot reply), else the reply that decided it (MAIL, RCPT, DATA,
    // final dot, or code 0 when the connection broke). A message over the server's SIZE
    // limit is not sent: every recipient gets a local 552 5.3.4.
    // `dsn`: DSN parameters, added to MAIL/RCPT when the server offers DSN (dsnOffered()).
    // CHUNKING offered: the message goes in BDAT chunks (no dot-stuffing), with
    // BODY=BINARYMIME when it is binary (NUL, bare CR or LF) and the server offers it. A
    // binary message to a server without CHUNKING and BINARYMIME is not sent: every
    // recipient gets a local 554 5.6.3 (RFC 3030 3: it cannot be converted). 8-bit content
    // goes with BODY=8BITMIME to a server that offers 8BITMIME or SMTPUTF8; to another its
    // 8bit MIME parts go as quoted-printable (MimeDowngrade, unless
    // settings.mimeOutputConversion is off), without SIZE; the SIZE check above uses the
    // stored size (quoted-printable is larger: the hop may still refuse it at the end).
    std::vector<SmtpReply> send(const std::string& sender, const std::vector<std::string>& recipients,
                                const MessageData& message, const OutboundDsn* dsn = nullptr);

    // RSET between transactions on a reused connection. false: the connection is unusable.
    bool reset();
    // QUIT (best effort) and close.
    void quit();
    // From another thread (shutdown): shutdown(2) the socket so a blocked read or write
    // returns at once; the owner then sees a broken connection.
    void abort();

    bool usable() const { return usable_; }
    bool tlsActive() const { return tls_; }
    bool tlsHandshakeFailed() const { return tlsHandshakeFailed_; }
    bool dsnOffered() const { return dsn_; }  // EHLO listed DSN (RFC 3461)
    // open() failed because TLS was required (encrypt/verify) and could not be had: STARTTLS
    // not offered or refused, handshake or certificate check failed.
    bool tlsRequirementFailed() const { return tlsRequirementFailed_; }
    // With the check on (setLoopCheck), open() failed because the server named itself as
    // this node does (settings' heloName) in its EHLO/HELO reply: mail sent there comes back
    // (this node, or a node of its cluster, which shares server.hostname).
    bool loopsBack() const { return loopsBack_; }
    // Whether open() checks the EHLO name for a loop: for MX delivery only. A relayhost or
    // transport is the operator's choice, and an MTA beside posternd on the same machine
    // (a content filter, a smarthost) may well carry the machine's name (Postfix checks only
    // the SMTP port 25 for the same reason). Off by default.
    void setLoopCheck(bool on) { loopCheck_ = on; }
    // The session is TLS with the certificate verified (policy verify: chain + host name).
    bool tlsVerified() const { return tls_ && tlsVerified_; }
    // DANE: why the last open() failed its TLSA check ("" = it did not), and what matched.
    const std::string& daneFailure() const { return daneFailure_; }
    const std::string& daneMatched() const { return daneMatched_; }
    bool offersSmtpUtf8() const { return smtpUtf8_; }      // RFC 6531
    bool offersRequireTls() const { return requireTls_; }  // RFC 8689
    // "mx1.example.net[192.0.2.1]:25" for logs and DSN Remote-MTA.
    const std::string& relay() const { return relay_; }
    const std::string& hostName() const { return hostName_; }

private:
    SmtpReply hello();
    SmtpReply authenticate(const Credentials& credentials);
    SmtpReply command(const std::string& line, Millis timeout);
    SmtpReply readReply(Millis timeout);
    bool readLine(std::string& line, Millis timeout);
    // SO_RCVTIMEO / SO_SNDTIMEO of socket_, set only when they change (-1: unknown).
    void receiveTimeout(Millis timeout);
    void sendTimeout(Millis timeout);
    void forgetTimeouts();
    bool sendAll(const std::string& data, Millis timeout);
    // `sevenBit`: the message's 8bit MIME parts as quoted-printable (MimeDowngrade).
    bool sendMessage(const MessageData& message, bool sevenBit);
    // RFC 3030: the transaction with BDAT chunks instead of DATA.
    std::vector<SmtpReply> sendChunked(const std::string& mail, const std::vector<std::string>& recipients,
                                       const MessageData& message, bool sevenBit,
                                       const std::function<std::string(std::size_t)>& rcptLine);
    // The message file as BDAT chunks; the reply that decides the message (the first
    // negative chunk reply, else the one to LAST).
    SmtpReply sendChunks(const MessageData& message, bool sevenBit);
    void close();
    SmtpReply broken(const std::string& what);
    // broken() for a reply that does not fit the command (a 3xx where a 2xx was due).
    SmtpReply outOfStep(const char* what, const SmtpReply& r);
    std::vector<SmtpReply>& lostInTransaction(std::vector<SmtpReply>& out, const std::vector<SmtpReply>& rcptReplies) const;

    ClientSettings settings_;
    Poco::Net::StreamSocket socket_;
    Millis receiveTimeout_{-1};
    Millis sendTimeout_{-1};
    std::mutex fdMutex_;  // guards fd_ between abort() and close()
    int fd_ = -1;
    bool aborted_ = false;  // guarded by fdMutex_
    std::string buffer_;  // received, not yet consumed
    std::string relay_;
    std::string hostName_;
    bool usable_ = false;
    bool tls_ = false;
    bool tlsHandshakeFailed_ = false;
    bool tlsRequirementFailed_ = false;
    bool tlsVerified_ = false;
    bool loopsBack_ = false;
    bool loopCheck_ = false;
    std::string daneFailure_;
    std::string daneMatched_;
    // EHLO extensions (RFC 5321 4.1.1.1), reset on every EHLO.
    bool extended_ = false;
    bool pipelining_ = false;
    bool sizeOffered_ = false;
    std::uint64_t sizeLimit_ = 0;  // 0 = no fixed limit
    bool eightBitMime_ = false;
    bool dsn_ = false;
    bool chunking_ = false;    // RFC 3030 CHUNKING
    bool binaryMime_ = false;  // RFC 3030 BINARYMIME
    bool smtpUtf8_ = false;
    bool requireTls_ = false;
    bool startTls_ = false;
    bool authPlain_ = false;
    bool authLogin_ = false;
};

}  // namespace postern::delivery
