#include "app/SmtpConnection.h"

#include "app/GuardedWrites.h"
#include "app/SessionLog.h"
#include "core/ClientAddress.h"
#include "core/EventLine.h"
#include "net/LineChannel.h"

#include <Poco/Exception.h>
#include <Poco/Net/SecureStreamSocket.h>

#include <openssl/ssl.h>

#include <algorithm>
#include <chrono>
#include <utility>

namespace postern::app {

namespace {
// After refusing a flood: how long and how much more input is read and thrown away so the
// client can read the refusal before the connection closes (see LineChannel::closeGracefully).
constexpr std::chrono::milliseconds LingerOnRefusal{2000};
constexpr std::size_t LingerMaxBytes = 1024 * 1024;
// {tls_version} and {cipher} for the milters ("TLSv1.3", "TLS_AES_128_GCM_SHA256").
struct TlsFacts {
    std::string version, cipher;
    int bits = 0;
};

TlsFacts tlsMacros(const Poco::Net::StreamSocket& socket) {
    try {
        Poco::Net::SecureStreamSocket secure(socket);
        Poco::Net::Session::Ptr session = secure.currentSession();
        if (!session || !session->sslSession()) return {};
        SSL_SESSION* s = session->sslSession();
        const int v = SSL_SESSION_get_protocol_version(s);
        std::string version = v == TLS1_3_VERSION ? "TLSv1.3" : v == TLS1_2_VERSION ? "TLSv1.2" : "TLS";
        const SSL_CIPHER* c = SSL_SESSION_get0_cipher(s);
        return {version, c ? SSL_CIPHER_get_name(c) : "", c ? SSL_CIPHER_get_bits(c, nullptr) : 0};
    } catch (...) {
        return {};
    }
}

}  // namespace

SmtpConnection::SmtpConnection(const Poco::Net::StreamSocket& socket, Services& services,
                               const ListenerRuntime& listener, const smtp::SmtpSettings& settings)
    : TCPServerConnection(socket), services_(services), listener_(listener), settings_(settings) {}

void SmtpConnection::run() {
    SessionScope scope(socket(), services_, listener_, "smtp");
    if (!scope.proceed()) return;
    const std::string& sid = scope.id();
    const core::ClientAddress& client = scope.client();
    const config::ListenerConfig& lc = listener_.config;
    auto& log = sessionLogger();
    auto& registry = services_.registry;
    const auto token = scope.token();
    const SessionTimeouts& timeouts = listener_.timeouts;
    std::string& reason = scope.reason;
    bool refused = false;  // the session ended on a refusal of ours, not on 221 to QUIT
    try {
        net::LineChannel ch(socket(), timeouts.smtpCommand);
        GuardedWrites writes(ch, registry, token, timeouts.smtpCommand);
        if (lc.tls == config::TlsMode::Implicit) ch.startTls(services_.tlsContext(), timeouts.smtpCommand);
        // A balancer's own address or an excluded network never relays on a grant (one made
        // before the address was excluded, or by posternctl grant add).
        smtp::SmtpPorts ports{services_.auth,
                              services_.directory,
                              services_.grantRefusal(client, scope.viaProxyHeader()) ? nullptr : services_.grants,
                              services_.sink,
                              &services_.limiter,
                              &services_.events,
                              services_.delegate};
        ports.hold = services_.hold;
        ports.usage = services_.usage;
        // TLS terminated by a trusted balancer (PROXY v2 SSL TLV) counts when configured.
        // Milters of this listener (one connection each for this session), asked from the greeting on.
        std::unique_ptr<core::MilterSession> milters;
        if (services_.milters)
            milters = services_.milters->open(lc.name, settings_.role == smtp::Role::Submission);
        ports.milter = milters.get();
        smtp::SmtpSession session(settings_, ports, sid, client, ch.isTls() || scope.balancerTls());
        session.setMilterInfo(lc.name, "", "");
        bool tlsKnown = false;  // {tls_version}/{cipher} taken once the handshake is done (first read)
        const core::ClientAddress local = scope.serverAddress(socket());
        session.setServerAddress(local.host(), local.port);
        // The TLS version (login log) is read once the handshake is surely done: at the
        // first command read over TLS.
        bool tlsVersionPending = ch.isTls();
        writes.write(session.greeting().bytes);
        std::string line;
        // smtp.min_data_rate: the deadline of the message data in progress (DATA, or one BDAT
        // chunk) is data_timeout after its start, plus a second per min_data_rate octets.
        using SteadyClock = std::chrono::steady_clock;
        bool dataPhase = false;
        SteadyClock::time_point dataStart;
        std::uint64_t dataOctets = 0;
        while (!session.isClosed()) {
            smtp::SmtpOutput out;
            if (session.inData()) {
                if (!dataPhase) {
                    dataPhase = true;
                    dataStart = SteadyClock::now();
                    dataOctets = 0;
                }
                const bool deadline = timeouts.smtpMinDataRate > 0 && ch.available() == 0;
                // Without a data deadline the replies queued so far (the 354) go out here, under
                // the write deadline, not in the read below.
                if (!deadline && ch.available() == 0) writes.flush();
                if (deadline)
                    registry.beginWait(token,
                                       dataStart + timeouts.smtpData +
                                           std::chrono::seconds(dataOctets / timeouts.smtpMinDataRate),
                                       /*idle=*/false);
                auto st = ch.fill(timeouts.smtpData);
                if (deadline && registry.endWait(token)) st = net::ReadStatus::Timeout;  // cut at its deadline
                if (st == net::ReadStatus::Timeout) {
                    out = session.onTimeout();
                    reason = "timeout";
                } else if (st != net::ReadStatus::Ok) {
                    // Nothing is delivered: the writer is discarded (DATA, or a BDAT chunk).
                    reason = session.state() == smtp::SmtpState::Chunk ? "dropped in BDAT" : "dropped in DATA";
                    break;
                } else {
                    std::size_t used = session.onData(ch.data(), ch.available(), out);
                    ch.consume(used);
                    dataOctets += used;
                }
            } else {
                dataPhase = false;
                // Only a whole buffered command is read without waiting; any wait for the
                // client (a part of a line buffered, a TLS record or handshake under way) has
                // smtp.command_timeout for the whole command, not per read.
                bool mayWait = ch.hasBufferedLine() ||
                               registry.beginWait(token, std::chrono::steady_clock::now() + timeouts.smtpCommand);
                if (!mayWait) {
                    out = session.onShutdown();
                    reason = "shutdown";
                } else {
                    // RFC 4954 4: an AUTH line may be 12288 octets; the command parser applies the
                    // 512-octet limit (smtp.max_command_length) to every other command.
                    net::ReadStatus st = net::ReadStatus::Closed;
                    try {
                        st = ch.readLine(line, std::max<std::size_t>(settings_.maxCommandLength, 12290),
                                         timeouts.smtpCommand);
                    } catch (const Poco::Exception&) {
                        // A TLS handshake cut at its deadline fails in here: a timeout.
                        if (registry.endWait(token)) reason = "timeout";
                        throw;
                    }
                    if (registry.endWait(token)) st = net::ReadStatus::Timeout;  // cut at its deadline
                    if (st == net::ReadStatus::Ok) {
                        if ((milters || services_.delegate) && ch.isTls() && !tlsKnown) {
                            auto info = tlsMacros(std::as_const(ch).socket());
                            session.setMilterInfo(lc.name, info.version, info.cipher, info.bits);
                            tlsKnown = true;
                        }
                        if (tlsVersionPending) {
                            session.setTlsVersion(ch.tlsVersion());
                            tlsVersionPending = false;
                        }
                        out = session.onLine(line);
                    } else if (st == net::ReadStatus::TooLong) {
                        out = session.onLineTooLong();
                        reason = "line too long";
                    } else if (st == net::ReadStatus::Timeout) {
                        out = session.onTimeout();
                        reason = "timeout";
                    } else if (registry.isShuttingDown()) {
                        out = session.onShutdown();
                        reason = "shutdown";
                    } else {
                        reason = "dropped";
                        break;
                    }
                }
            }
            writes.write(out.bytes);
            if (out.action == smtp::SmtpOutput::Action::StartTls) {
                writes.flush();  // the 220 and what was queued before it, under the deadline
                const std::size_t dropped = ch.startTls(services_.tlsContext(), timeouts.smtpCommand);
                session.onTlsStarted();
                tlsVersionPending = true;
                core::EventLine started = core::EventLine::inSession(sid, "starttls").add("ip", client.host());
                // Plaintext pipelined behind STARTTLS was thrown away (CVE-2011-0411): say so.
                if (dropped > 0) started.add("plaintext_dropped", dropped);
                log.information(started.str());
            } else if (out.action == smtp::SmtpOutput::Action::Close) {
                refused = !session.closedByQuit();
                break;
            }
        }
        // A refusal that ends the session (421 too many errors or transactions, 554 from a
        // milter...) while the client is still sending: closing with its input unread would
        // send an RST that can destroy the reply before the client reads it. A client that is
        // not sending (nothing waiting to be read: a blocked AUTH, say) is not waited for,
        // nor are a QUIT, a timeout or a shutdown: their threads are free at once.
        if (reason == "line too long" ||
            (refused && reason != "timeout" && reason != "shutdown" && ch.inputWaiting()))
            writes.closeGracefully(LingerOnRefusal, LingerMaxBytes);
        else
            writes.flush();
    } catch (const Poco::TimeoutException&) {
        reason = "timeout";  // a client that did not read our replies in time (GuardedWrites)
    } catch (const Poco::Exception& e) {
        if (reason != "timeout") reason = "error: " + e.displayText();  // a timeout's goodbye may fail too
    } catch (const std::exception& e) {
        if (reason != "timeout") reason = std::string("error: ") + e.what();
    }
}

}  // namespace postern::app
