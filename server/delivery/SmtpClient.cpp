#include "delivery/SmtpClient.h"

#include "core/TlsTimeout.h"
#include "core/Utf8.h"
#include "delivery/MessageSource.h"
#include "delivery/MimeDowngrade.h"
#include "sasl/Base64.h"
#include "smtpproto/DsnParams.h"
#include "smtpproto/Xtext.h"

#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/X509Certificate.h>
#include <Poco/Timespan.h>

#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace postern::delivery {

namespace {

// A 3xx where a completion (2xx) was due (RFC 5321 4.2.1): not a success.
bool intermediate(const SmtpReply& r) { return r.code >= 300 && r.code < 400; }

constexpr std::size_t MaxReplyLine = 4096;   // longer is a broken server, not a reply
constexpr std::size_t MaxReplyLines = 100;
constexpr std::size_t BlockSize = 64 * 1024;

Poco::Timespan span(Millis ms) { return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(ms.count()) * 1000); }

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

// " RET=HDRS ENVID=..." for MAIL (RFC 3461 4.3, 4.4); "" when nothing was asked.
std::string dsnMailParams(const core::MessageDsn& d) {
    std::string out;
    if (d.ret != core::DsnRet::Unspecified) out += " RET=" + smtp::formatRet(d.ret);
    if (!d.envid.empty()) out += " ENVID=" + smtp::encodeXtext(d.envid);
    return out;
}

// " NOTIFY=... ORCPT=type;xtext" for RCPT (RFC 3461 4.1, 4.2).
std::string dsnRcptParams(const core::RecipientDsn& d) {
    std::string out;
    if (d.notify != 0) out += " NOTIFY=" + smtp::formatNotify(d.notify);
    if (!d.orcptType.empty()) out += " ORCPT=" + d.orcptType + ";" + smtp::encodeXtext(d.orcpt);
    return out;
}

// The octets that go out for a message, block by block: the stored file's, or their 7-bit
// form (MimeDowngrade) for a next hop without 8BITMIME.
class OutboundBlocks {
public:
    OutboundBlocks(const MessageData& message, bool sevenBit, std::size_t blockSize)
        : source_(message), blockSize_(blockSize) {
        if (sevenBit) downgrade_.emplace();
    }
    bool ok() const { return source_.ok(); }
    // The next block into `out`: empty at the end; false on a read error.
    bool next(std::string& out) {
        // Not zero-filled (a block is up to 1 MiB; a 10 KiB message must not pay for it).
        if (!in_) in_.reset(new char[blockSize_]);
        out.clear();
        while (!finished_) {
            const ssize_t n = source_.read(in_.get(), blockSize_);
            if (n < 0) return false;
            const std::string_view got(in_.get(), static_cast<std::size_t>(n));
            if (!downgrade_) {
                out.assign(got);
                finished_ = n == 0;
                return true;
            }
            if (n == 0) {
                downgrade_->finish(out);
                finished_ = true;
            } else {
                downgrade_->feed(got, out);
            }
            if (!out.empty()) break;
        }
        return true;
    }

private:
    MessageSource source_;
    std::size_t blockSize_;
    std::optional<MimeDowngrade> downgrade_;
    std::unique_ptr<char[]> in_;
    bool finished_ = false;
};

}  // namespace

SmtpClient::SmtpClient(const ClientSettings& settings) : settings_(settings) {}

SmtpClient::~SmtpClient() { close(); }

void SmtpClient::abort() {
    std::lock_guard lock(fdMutex_);
    aborted_ = true;
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

void SmtpClient::close() {
    {
        std::lock_guard lock(fdMutex_);
        fd_ = -1;
    }
    if (usable_ || tls_) {
        try {
            socket_.close();
        } catch (...) {
        }
    }
    socket_ = Poco::Net::StreamSocket();
    forgetTimeouts();
    usable_ = false;
    tls_ = false;
    buffer_.clear();
}

SmtpReply SmtpClient::broken(const std::string& what) {
    close();
    return SmtpReply::local(what);
}

// The connection broke during MAIL/RCPT: a recipient the server refused keeps its refusal
// (a 550 is not retried for days), every other one (accepted or not asked) is a temporary
// "lost connection".
std::vector<SmtpReply>& SmtpClient::lostInTransaction(std::vector<SmtpReply>& out,
                                                      const std::vector<SmtpReply>& rcptReplies) const {
    const SmtpReply lost = SmtpReply::local("lost connection with " + relay_ + " during the transaction");
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = i < rcptReplies.size() && rcptReplies[i].code != 0 && !rcptReplies[i].isPositive() ? rcptReplies[i] : lost;
    return out;
}

SmtpReply SmtpClient::outOfStep(const char* what, const SmtpReply& r) {
    return broken("protocol error: " + relay_ + " answered " + what + " with " + std::to_string(r.code));
}

// setsockopt(2) only when the value changes: it was two calls per command and reply, 30 % of
// posternd's setsockopt calls under S2 (a relayed message's outbound session).
void SmtpClient::receiveTimeout(Millis timeout) {
    if (timeout == receiveTimeout_) return;
    receiveTimeout_ = Millis{-1};  // if the call throws
    socket_.setReceiveTimeout(span(tls_ ? core::tlsSocketTimeout(timeout) : timeout));
    receiveTimeout_ = timeout;
}

void SmtpClient::sendTimeout(Millis timeout) {
    if (timeout == sendTimeout_) return;
    sendTimeout_ = Millis{-1};
    socket_.setSendTimeout(span(tls_ ? core::tlsSocketTimeout(timeout) : timeout));
    sendTimeout_ = timeout;
}

void SmtpClient::forgetTimeouts() { receiveTimeout_ = sendTimeout_ = Millis{-1}; }

bool SmtpClient::readLine(std::string& line, Millis timeout) {
    try {
        receiveTimeout(timeout);
        while (true) {
            auto nl = buffer_.find("\r\n");
            if (nl != std::string::npos) {
                line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 2);
                return true;
            }
            if (buffer_.size() > MaxReplyLine) return false;
            char chunk[4096];
            int n = socket_.receiveBytes(chunk, sizeof chunk);
            if (n <= 0) return false;
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    } catch (const Poco::Exception&) {
        return false;
    } catch (const std::exception&) {
        return false;
    }
}

SmtpReply SmtpClient::readReply(Millis timeout) {
    ReplyParser parser;
    std::string line;
    for (std::size_t i = 0; i < MaxReplyLines; ++i) {
        if (!readLine(line, timeout)) return broken("lost connection with " + relay_ + " (no reply or timeout)");
        switch (parser.feed(line)) {
        case ReplyParser::Result::Done: return parser.reply();
        case ReplyParser::Result::NeedMore: break;
        case ReplyParser::Result::Malformed: return broken("malformed reply from " + relay_);
        }
    }
    return broken("reply from " + relay_ + " has too many lines");
}

bool SmtpClient::sendAll(const std::string& data, Millis timeout) {
    try {
        sendTimeout(timeout);
        std::size_t done = 0;
        while (done < data.size()) {
            int n = socket_.sendBytes(data.data() + done, static_cast<int>(data.size() - done));
            if (n <= 0) return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    } catch (const Poco::Exception&) {
        return false;
    } catch (const std::exception&) {
        return false;
    }
}

SmtpReply SmtpClient::command(const std::string& line, Millis timeout) {
    if (!sendAll(line + "\r\n", settings_.mailTimeout)) return broken("lost connection with " + relay_ + " while sending");
    return readReply(timeout);
}

SmtpReply SmtpClient::hello() {
    extended_ = pipelining_ = sizeOffered_ = eightBitMime_ = startTls_ = authPlain_ = authLogin_ = false;
    dsn_ = false;
    chunking_ = binaryMime_ = false;
    smtpUtf8_ = requireTls_ = false;
    sizeLimit_ = 0;
    SmtpReply r = command("EHLO " + settings_.heloName, settings_.mailTimeout);
    if (r.code == 0) return r;
    if (r.isPermanent()) {
        // RFC 5321 3.2: a server that does not know EHLO answers 5xx; fall back to HELO.
        r = command("HELO " + settings_.heloName, settings_.mailTimeout);
        return r;
    }
    if (!r.isPositive()) return r;
    extended_ = true;
    for (std::size_t i = 1; i < r.lines.size(); ++i) {
        std::string line = upper(r.lines[i]);
        std::string keyword = line.substr(0, line.find(' '));
        std::string params = keyword.size() < line.size() ? line.substr(keyword.size() + 1) : "";
        if (keyword == "PIPELINING") pipelining_ = true;
        else if (keyword == "8BITMIME") eightBitMime_ = true;
        else if (keyword == "DSN") dsn_ = true;
        else if (keyword == "SMTPUTF8") smtpUtf8_ = true;
        else if (keyword == "REQUIRETLS") requireTls_ = true;
        else if (keyword == "STARTTLS") startTls_ = true;
        else if (keyword == "CHUNKING") chunking_ = true;
        else if (keyword == "BINARYMIME") binaryMime_ = true;
        else if (keyword == "SIZE") {
            sizeOffered_ = true;
            try {
                sizeLimit_ = params.empty() ? 0 : std::stoull(params);
            } catch (...) {
                sizeLimit_ = 0;
            }
        } else if (keyword == "AUTH" || keyword.rfind("AUTH=", 0) == 0) {
            std::string mechs = keyword == "AUTH" ? params : keyword.substr(5) + " " + params;
            mechs = " " + mechs + " ";
            if (mechs.find(" PLAIN ") != std::string::npos) authPlain_ = true;
            if (mechs.find(" LOGIN ") != std::string::npos) authLogin_ = true;
        }
    }
    return r;
}

SmtpReply SmtpClient::open(const Poco::Net::SocketAddress& address, const std::string& hostName, TlsPolicy policy,
                           const Credentials* credentials, bool tryTls, const DaneTarget* dane) {
    close();
    daneFailure_.clear();
    daneMatched_.clear();
    tlsHandshakeFailed_ = false;
    tlsRequirementFailed_ = false;
    tlsVerified_ = false;
    loopsBack_ = false;
    hostName_ = hostName;
    relay_ = hostName + "[" + address.host().toString() + "]:" + std::to_string(address.port());
    {
        std::lock_guard lock(fdMutex_);
        if (aborted_) return SmtpReply::local("delivery is stopping: no new connection to " + relay_);
    }
    try {
        socket_ = Poco::Net::StreamSocket(address.family());
        forgetTimeouts();
        socket_.connect(address, span(settings_.connectTimeout));
        socket_.setNoDelay(true);
        std::lock_guard lock(fdMutex_);
        fd_ = socket_.impl()->sockfd();
        if (aborted_) ::shutdown(fd_, SHUT_RDWR);  // stop() came while connecting
    } catch (const Poco::Exception& e) {
        return broken("connect to " + relay_ + " failed: " + e.displayText());
    }
    usable_ = true;
    SmtpReply greeting = readReply(settings_.greetingTimeout);
    if (!greeting.isPositive()) {
        quit();
        return greeting;
    }
    SmtpReply r = hello();
    if (!r.isPositive()) {
        quit();
        return r;
    }
    bool required = policy == TlsPolicy::Encrypt || policy == TlsPolicy::Verify || policy == TlsPolicy::Dane ||
                    policy == TlsPolicy::DaneOnly;
    const bool daneCheckWanted = dane && (policy == TlsPolicy::Dane || policy == TlsPolicy::DaneOnly);
    // RFC 5321 4.1.1.1: the reply to EHLO/HELO starts with the server's name. Ours means a
    // mail loop (an MX or transport pointing back here), a permanent failure (5.4.6); found
    // before TLS or credentials are spent on it, as Postfix does ("mail for ... loops back
    // to myself"). Not where the policy authenticates the server (verify, DANE): there a
    // permanent failure must rest on what came over the authenticated channel, not on a
    // plaintext reply anyone on the path can rewrite (RFC 7672 2.2, RFC 8461 5: such routes
    // defer, never bounce, what an attacker can cause), so it is checked after TLS.
    const bool authenticates = policy == TlsPolicy::Verify || daneCheckWanted;
    auto loopsBack = [&](const SmtpReply& reply) {
        if (!loopCheck_ || settings_.heloName.empty() || reply.lines.empty()) return false;
        const std::string_view first = reply.lines[0];
        if (core::asciiLower(first.substr(0, first.find(' '))) != core::asciiLower(settings_.heloName)) return false;
        loopsBack_ = true;
        quit();
        return true;
    };
    const std::string loopText = relay_ + " replied to EHLO with my own hostname " + settings_.heloName;
    if (!authenticates && loopsBack(r)) return SmtpReply::local(loopText);
    if (policy != TlsPolicy::None && tryTls) {
        if (!startTls_ || !extended_) {
            if (required) {
                quit();
                tlsRequirementFailed_ = true;
                if (daneCheckWanted) daneFailure_ = "no_starttls";
                return SmtpReply::local("TLS is required for " + relay_ + " but STARTTLS is not offered");
            }
        } else {
            SmtpReply tr = command("STARTTLS", settings_.mailTimeout);
            if (tr.code == 0) return tr;
            if (tr.code != 220) {
                // RFC 3207 4: after a refused STARTTLS the session goes on in clear, which
                // only the 'may' policy accepts.
                if (required) {
                    quit();
                    tlsRequirementFailed_ = true;
                    if (daneCheckWanted) daneFailure_ = "starttls_refused";
                    return tr;
                }
            } else {
                // At this point there must not be any pending plaintext: bytes sent by the
                // server before the handshake would be taken as if they came over TLS
                // (the STARTTLS command injection class of bugs, CVE-2011-0411).
                if (!buffer_.empty()) return broken("plaintext after 220 to STARTTLS from " + relay_);
                Poco::Net::Context::Ptr ctx = daneCheckWanted              ? settings_.tlsDane
                                            : policy == TlsPolicy::Verify ? settings_.tlsVerify
                                                                          : settings_.tlsOpportunistic;
                if (!ctx) return broken("no TLS client context for " + relay_);
                DaneCapture capture;  // the chain of this handshake (same thread)
                try {
                    // The handshake runs in attach(), over TLS already (core/TlsTimeout.h).
                    socket_.setReceiveTimeout(span(core::tlsSocketTimeout(settings_.mailTimeout)));
                    socket_.setSendTimeout(span(core::tlsSocketTimeout(settings_.mailTimeout)));
                    forgetTimeouts();
                    // SNI: the TLSA base domain under DANE, else the MX host name (RFC 7672 8.1).
                    const std::string& sni = daneCheckWanted && !dane->names.empty() ? dane->names.front() : hostName;
                    Poco::Net::SecureStreamSocket secure = Poco::Net::SecureStreamSocket::attach(socket_, sni, ctx);
                    // POCO 1.11's attach() returns quietly when SSL_connect's read times out
                    // (WANT_READ is not an error there), after checking the name of a
                    // certificate that has not arrived yet: the handshake would then finish
                    // inside the first write, and a server that stalled past the timeout
                    // would never have its name checked. So the handshake is finished here
                    // (a stall now ends in a timeout) and the name checked after it.
                    if (secure.completeHandshake() != 1)
                        throw Poco::Net::SSLException("the TLS handshake did not complete");
                    if (policy == TlsPolicy::Verify && !secure.havePeerCertificate())
                        throw Poco::Net::SSLException("no certificate from the server");
                    secure.verifyPeerCertificate();
                    // POCO's name check takes a partial wildcard ("mx*.example.net"), which
                    // RFC 6125 6.4.3 and MTA-STS (RFC 8461 3.4: only a whole left-most label)
                    // do not: the certificate must name the host with at most "*." in front.
                    // A next hop given as an address ([192.0.2.10]) is matched against the
                    // certificate's IP addresses, as POCO's check did.
                    if (policy == TlsPolicy::Verify) {
                        const Poco::Net::X509Certificate peer = secure.peerCertificate();
                        X509* cert = const_cast<X509*>(peer.certificate());
                        Poco::Net::IPAddress literal;
                        const bool ok = Poco::Net::IPAddress::tryParse(hostName, literal)
                                            ? X509_check_ip(cert, static_cast<const unsigned char*>(literal.addr()),
                                                            static_cast<std::size_t>(literal.length()), 0) == 1
                                            : X509_check_host(cert, hostName.data(), hostName.size(),
                                                              X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, nullptr) == 1;
                        if (!ok) throw Poco::Net::SSLException("the certificate is not valid for " + hostName);
                    }
                    socket_ = secure;
                    forgetTimeouts();  // a new socket object: set them again before use
                    tls_ = true;
                    tlsVerified_ = policy == TlsPolicy::Verify;
                } catch (const Poco::Exception& e) {
                    tlsHandshakeFailed_ = true;
                    tlsRequirementFailed_ = required;
                    if (daneCheckWanted) daneFailure_ = "handshake";
                    return broken("TLS handshake with " + relay_ + " failed: " + e.displayText());
                }
                if (daneCheckWanted) {
                    DaneResult d = daneCheck(capture.chain(), dane->tlsa, dane->names);
                    if (!d.ok) {
                        // Nothing but QUIT goes to a server that failed authentication.
                        daneFailure_ = d.reason;
                        tlsRequirementFailed_ = true;
                        quit();
                        return SmtpReply::local("DANE: the certificate of " + relay_ +
                                                " does not match its TLSA records (" + d.reason + ")");
                    }
                    daneMatched_ = d.matched;
                    tlsVerified_ = true;  // authenticated by DNSSEC (RFC 7672), e.g. for REQUIRETLS
                }
                // RFC 3207 4.2: forget everything learned before TLS and ask again.
                r = hello();
                if (!r.isPositive()) {
                    quit();
                    return r;
                }
                if (authenticates && loopsBack(r)) return SmtpReply::local(loopText);
            }
        }
    }
    if (credentials) {
        if (!tls_ && policy != TlsPolicy::None) {
            quit();
            return SmtpReply::local("not sending credentials to " + relay_ + " without TLS");
        }
        SmtpReply ar = authenticate(*credentials);
        if (!ar.isPositive()) {
            quit();
            return ar;
        }
    }
    SmtpReply ready;
    ready.code = 250;
    ready.lines.push_back("ready");
    return ready;
}

SmtpReply SmtpClient::authenticate(const Credentials& c) {
    if (authPlain_) {
        std::string token = std::string(1, '\0') + c.user + std::string(1, '\0') + c.password;
        return command("AUTH PLAIN " + sasl::encodeBase64(token), settings_.mailTimeout);
    }
    if (authLogin_) {
        SmtpReply r = command("AUTH LOGIN", settings_.mailTimeout);
        if (r.code != 334) return r;
        r = command(sasl::encodeBase64(c.user), settings_.mailTimeout);
        if (r.code != 334) return r;
        return command(sasl::encodeBase64(c.password), settings_.mailTimeout);
    }
    return SmtpReply::local(relay_ + " offers no AUTH mechanism we support (PLAIN, LOGIN)");
}

bool SmtpClient::sendMessage(const MessageData& message, bool sevenBit) {
    OutboundBlocks source(message, sevenBit, BlockSize);
    if (!source.ok()) return false;
    std::string out;
    out.reserve(BlockSize + BlockSize / 8);
    std::string in;
    bool atLineStart = true;
    char last[2] = {0, 0};
    bool ok = true;
    while (ok) {
        if (!source.next(in)) {
            ok = false;
            break;
        }
        if (in.empty()) break;
        for (char c : in) {
            // RFC 5321 4.5.2: a line starting with "." gets one more ".".
            if (atLineStart && c == '.') out += '.';
            out += c;
            atLineStart = c == '\n';
            last[0] = last[1];
            last[1] = c;
        }
        if (!sendAll(out, settings_.dataBlockTimeout)) ok = false;
        out.clear();
    }
    if (!ok) return false;
    // The final dot must start a line: add CRLF if the data does not end with one.
    std::string end = (last[0] == '\r' && last[1] == '\n') ? ".\r\n" : "\r\n.\r\n";
    return sendAll(end, settings_.dataBlockTimeout);
}

std::vector<SmtpReply> SmtpClient::send(const std::string& sender, const std::vector<std::string>& recipients,
                                        const MessageData& message, const OutboundDsn* dsn) {
    std::vector<SmtpReply> out(recipients.size());
    auto all = [&](const SmtpReply& r) {
        for (auto& o : out) o = r;
        return out;
    };
    if (!usable_) return all(SmtpReply::local("no connection"));
    // RFC 1870 6: a message over the announced limit is not sent.
    if (sizeOffered_ && sizeLimit_ > 0 && message.size > sizeLimit_) {
        SmtpReply big;
        big.code = 552;
        big.lines.push_back("5.3.4 message size " + std::to_string(message.size) + " exceeds the limit " +
                            std::to_string(sizeLimit_) + " announced by " + relay_);
        return all(big);
    }
    // RFC 3030 3: a binary message needs BDAT and BINARYMIME; it cannot be converted.
    const bool binary = needsBinaryMime(message);
    // RFC 6152 3: 8-bit data only to a server that offers 8BITMIME (or SMTPUTF8, RFC 6531
    // 3.1, as Postfix takes it); to others its 8bit MIME parts go as quoted-printable.
    const bool eightBitOffered = eightBitMime_ || smtpUtf8_;
    const bool sevenBit = message.eightBit && !binary && !eightBitOffered && settings_.mimeOutputConversion;
    std::string mail = "MAIL FROM:<" + sender + ">";
    // The converted size is known only as it is sent (RFC 1870 allows leaving SIZE out; so
    // does Postfix when it converts).
    if (sizeOffered_ && !sevenBit) mail += " SIZE=" + std::to_string(message.size);
    if (binary && !(chunking_ && binaryMime_)) {
        SmtpReply refused;
        refused.code = 554;
        refused.lines.push_back("5.6.3 binary message (BINARYMIME) and " + relay_ +
                                " does not offer CHUNKING and BINARYMIME");
        return all(refused);
    }
    if (binary) mail += " BODY=BINARYMIME";
    else if (message.eightBit && eightBitOffered) mail += " BODY=8BITMIME";
    const bool passDsn = dsn && dsn_;
    if (passDsn) mail += dsnMailParams(dsn->message);
    auto rcptLine = [&](std::size_t i) {
        std::string line = "RCPT TO:<" + recipients[i] + ">";
        if (passDsn && i < dsn->recipients.size()) line += dsnRcptParams(dsn->recipients[i]);
        return line;
    };
    // RFC 6531 3.4: SMTPUTF8 goes on when the next hop offers it (the caller bounced a
    // message that needs it where it is not offered). RFC 8689 4.2.1: REQUIRETLS likewise.
    if (message.smtpUtf8 && smtpUtf8_) mail += " SMTPUTF8";
    if (message.requireTls && requireTls_) mail += " REQUIRETLS";
    if (chunking_) return sendChunked(mail, recipients, message, sevenBit, rcptLine);

    SmtpReply mailReply, dataReply;
    std::vector<SmtpReply> rcptReplies;
    if (pipelining_) {
        // RFC 2920 3.1: MAIL, RCPT... and DATA in one group; DATA ends the group.
        std::string batch = mail + "\r\n";
        for (std::size_t i = 0; i < recipients.size(); ++i) batch += rcptLine(i) + "\r\n";
        batch += "DATA\r\n";
        if (!sendAll(batch, settings_.mailTimeout)) return all(broken("lost connection with " + relay_ + " while sending"));
        mailReply = readReply(settings_.mailTimeout);
        for (std::size_t i = 0; i < recipients.size(); ++i)
            rcptReplies.push_back(usable_ ? readReply(settings_.rcptTimeout) : mailReply);
        dataReply = usable_ ? readReply(settings_.dataTimeout) : mailReply;
    } else {
        mailReply = command(mail, settings_.mailTimeout);
        if (!mailReply.isPositive()) return all(mailReply);
        for (std::size_t i = 0; i < recipients.size(); ++i) {
            rcptReplies.push_back(command(rcptLine(i), settings_.rcptTimeout));
            if (!usable_) break;
        }
        if (!usable_) return lostInTransaction(out, rcptReplies);
        bool any = std::any_of(rcptReplies.begin(), rcptReplies.end(), [](const SmtpReply& r) { return r.isPositive(); });
        if (!any) return rcptReplies;
        dataReply = command("DATA", settings_.dataTimeout);
    }
    // RFC 5321 4.3.2: MAIL and RCPT succeed with 2xx only, DATA goes on with 354 only. Any
    // other positive reply (a 250 to DATA from a server out of step with the pipelined
    // group, a 354 to RCPT) would count as delivered a message never sent: the session is
    // dropped and every recipient retried later, as Postfix does.
    const bool outOfSequence = intermediate(mailReply) || std::any_of(rcptReplies.begin(), rcptReplies.end(), intermediate) ||
                           (dataReply.isPositive() && dataReply.code != 354);
    if (usable_ && outOfSequence)
        return all(broken("protocol error: " + relay_ + " answered MAIL, RCPT or DATA out of sequence"));
    if (!usable_) {
        // The connection broke somewhere in the group: nobody got the message.
        SmtpReply lost = SmtpReply::local("lost connection with " + relay_ + " during the transaction");
        for (std::size_t i = 0; i < out.size(); ++i)
            out[i] = rcptReplies[i].code != 0 && !rcptReplies[i].isPositive() ? rcptReplies[i] : lost;
        if (!mailReply.isPositive() && mailReply.code != 0) return all(mailReply);
        return out;
    }
    if (!mailReply.isPositive()) {
        if (dataReply.code == 354) {  // a server that said 354 anyway: end the empty message
            sendAll(".\r\n", settings_.dataBlockTimeout);
            readReply(settings_.dataDoneTimeout);
        }
        return all(mailReply);
    }
    bool any = std::any_of(rcptReplies.begin(), rcptReplies.end(), [](const SmtpReply& r) { return r.isPositive(); });
    if (!any) {
        if (dataReply.code == 354) {
            sendAll(".\r\n", settings_.dataBlockTimeout);
            readReply(settings_.dataDoneTimeout);
        }
        return rcptReplies;
    }
    SmtpReply finalReply = dataReply;
    if (dataReply.code == 354) {
        if (!sendMessage(message, sevenBit)) {
            finalReply = broken("lost connection with " + relay_ + " while sending the message");
        } else {
            finalReply = readReply(settings_.dataDoneTimeout);
            if (intermediate(finalReply)) finalReply = outOfStep("the end of data", finalReply);
        }
    }
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = rcptReplies[i].isPositive() ? finalReply : rcptReplies[i];
    return out;
}

bool SmtpClient::needsBinaryMime(const MessageData& message) {
    MessageSource source(message);
    if (!source.ok()) return false;
    char buf[BlockSize];
    char prev = '\0';
    bool binary = false;
    while (!binary) {
        ssize_t n = source.read(buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n && !binary; ++i) {
            const char c = buf[i];
            if (c == '\0' || (c == '\n' && prev != '\r') || (prev == '\r' && c != '\n')) binary = true;
            prev = c;
        }
    }
    return binary || prev == '\r';  // a CR as the very last octet is bare too
}

std::vector<SmtpReply> SmtpClient::sendChunked(const std::string& mail, const std::vector<std::string>& recipients,
                                               const MessageData& message, bool sevenBit,
                                               const std::function<std::string(std::size_t)>& rcptLine) {
    std::vector<SmtpReply> out(recipients.size());
    auto all = [&](const SmtpReply& r) {
        for (auto& o : out) o = r;
        return out;
    };
    SmtpReply mailReply;
    std::vector<SmtpReply> rcptReplies;
    if (pipelining_) {
        // RFC 2920 3.1 / RFC 3030 4.2: MAIL and RCPT in one group; the chunks follow once
        // the replies say there is someone to send to.
        std::string batch = mail + "\r\n";
        for (std::size_t i = 0; i < recipients.size(); ++i) batch += rcptLine(i) + "\r\n";
        if (!sendAll(batch, settings_.mailTimeout)) return all(broken("lost connection with " + relay_ + " while sending"));
        mailReply = readReply(settings_.mailTimeout);
        for (std::size_t i = 0; i < recipients.size(); ++i)
            rcptReplies.push_back(usable_ ? readReply(settings_.rcptTimeout) : mailReply);
        if (!usable_) {
            SmtpReply lost = SmtpReply::local("lost connection with " + relay_ + " during the transaction");
            if (!mailReply.isPositive() && mailReply.code != 0) return all(mailReply);
            for (std::size_t i = 0; i < out.size(); ++i)
                out[i] = rcptReplies[i].code != 0 && !rcptReplies[i].isPositive() ? rcptReplies[i] : lost;
            return out;
        }
        if (!mailReply.isPositive()) return all(mailReply);
    } else {
        mailReply = command(mail, settings_.mailTimeout);
        if (!mailReply.isPositive()) return all(mailReply);
        for (std::size_t i = 0; i < recipients.size(); ++i) {
            rcptReplies.push_back(command(rcptLine(i), settings_.rcptTimeout));
            if (!usable_) return lostInTransaction(out, rcptReplies);
        }
    }
    if (intermediate(mailReply) || std::any_of(rcptReplies.begin(), rcptReplies.end(), intermediate))
        return all(broken("protocol error: " + relay_ + " answered MAIL or RCPT out of sequence"));
    bool any = std::any_of(rcptReplies.begin(), rcptReplies.end(), [](const SmtpReply& r) { return r.isPositive(); });
    if (!any) return rcptReplies;
    SmtpReply finalReply = sendChunks(message, sevenBit);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = rcptReplies[i].isPositive() ? finalReply : rcptReplies[i];
    return out;
}

SmtpReply SmtpClient::sendChunks(const MessageData& message, bool sevenBit) {
    // One chunk per block read (or converted), "BDAT 0 LAST" at the end (the size of the file
    // is not trusted: a chunk says exactly what it carries). With PIPELINING the chunks go out
    // without waiting and the replies are read at the end (RFC 3030 4.2); a chunk reply is
    // a few octets, so they cannot fill the socket buffers while we write.
    OutboundBlocks source(message, sevenBit, BlockSize * 16);
    if (!source.ok()) return broken("cannot read " + message.path + " for " + relay_);
    std::string block;
    std::size_t chunks = 0;
    SmtpReply decided;  // the first negative chunk reply
    bool ok = true;
    while (ok) {
        if (!source.next(block)) {
            ok = false;
            break;
        }
        if (block.empty()) break;
        std::string out = "BDAT " + std::to_string(block.size()) + "\r\n";
        out += block;
        if (!sendAll(out, settings_.dataBlockTimeout)) {
            ok = false;
            break;
        }
        ++chunks;
        if (!pipelining_) {
            SmtpReply r = readReply(settings_.dataBlockTimeout);
            --chunks;
            if (!usable_) break;
            if (intermediate(r)) return outOfStep("BDAT", r);
            if (!r.isPositive()) {
                decided = r;
                break;  // the server ended the transaction: no more chunks
            }
        }
    }
    if (!usable_) return SmtpReply::local("lost connection with " + relay_ + " while sending the message");
    if (!ok) return broken("lost connection with " + relay_ + " while sending the message");
    if (decided.code != 0) return decided;
    if (!sendAll("BDAT 0 LAST\r\n", settings_.dataBlockTimeout))
        return broken("lost connection with " + relay_ + " while sending the message");
    for (std::size_t i = 0; i < chunks; ++i) {
        SmtpReply r = readReply(settings_.dataBlockTimeout);
        if (!usable_) return r;
        if (intermediate(r)) return outOfStep("BDAT", r);
        if (!r.isPositive() && decided.code == 0) decided = r;
    }
    SmtpReply last = readReply(settings_.dataDoneTimeout);
    if (decided.code != 0 && usable_) return decided;
    if (intermediate(last)) return outOfStep("BDAT LAST", last);
    return last;
}

bool SmtpClient::reset() {
    if (!usable_) return false;
    SmtpReply r = command("RSET", settings_.mailTimeout);
    if (!r.isPositive()) {
        close();
        return false;
    }
    return true;
}

void SmtpClient::quit() {
    if (usable_) {
        if (sendAll("QUIT\r\n", std::min(settings_.mailTimeout, Millis(10'000))))
            readReply(std::min(settings_.mailTimeout, Millis(10'000)));
    }
    close();
}

}  // namespace postern::delivery
