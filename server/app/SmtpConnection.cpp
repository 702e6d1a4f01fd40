#include "app/SmtpConnection.h"

#include "app/SessionLog.h"
#include "core/ClientAddress.h"
#include "net/LineChannel.h"

#include <Poco/Exception.h>

#include <algorithm>
#include <chrono>

namespace postern::app {

SmtpConnection::SmtpConnection(const Poco::Net::StreamSocket& socket, Services& services,
                               const ListenerRuntime& listener, const smtp::SmtpSettings& settings)
    : TCPServerConnection(socket), services_(services), listener_(listener), settings_(settings) {}

void SmtpConnection::run() {
    const auto started = std::chrono::steady_clock::now();
    const std::string sid = services_.nextSessionId();
    Prologue prologue = runPrologue(socket(), services_, listener_, sid);
    const core::ClientAddress& client = prologue.client;
    const config::ListenerConfig& lc = listener_.config;
    if (services_.telemetry) services_.telemetry->connectionOpened(lc.name);
    auto& log = sessionLogger();
    log.information("s=%s event=connect svc=smtp listener=%s ip=%s port=%hu", sid, lc.name, client.host(),
                    client.port);

    if (!prologue.proceed) {
        log.information("s=%s event=disconnect svc=%s ip=%s reason=\"%s\" ms=0", sid, std::string("smtp"), client.host(),
                        prologue.reason);
        return;
    }

    auto& registry = services_.registry;
    const auto token = registry.add(socket());
    const auto& cfg = services_.config.smtp;
    std::string reason = "quit";
    try {
        net::LineChannel ch(socket());
        if (lc.tls == config::TlsMode::Implicit) {
            ch.startTls(services_.tlsContext(), cfg.commandTimeout);
            registry.update(token, ch.socket());
        }
        smtp::SmtpPorts ports{services_.auth,    services_.directory, services_.grants,
                              services_.sink,    services_.limiter,   services_.events};
        // TLS terminated by a trusted balancer (PROXY v2 SSL TLV) counts when configured.
        smtp::SmtpSession session(settings_, ports, sid, client, ch.isTls() || prologue.balancerTls);
        ch.write(session.greeting().bytes);
        std::string line;
        while (!session.isClosed()) {
            smtp::SmtpOutput out;
            if (session.inData()) {
                auto st = ch.fill(cfg.dataTimeout);
                if (st == net::ReadStatus::Timeout) {
                    out = session.onTimeout();
                    reason = "timeout";
                } else if (st != net::ReadStatus::Ok) {
                    reason = "dropped in DATA";  // nothing is delivered: the writer is discarded
                    break;
                } else {
                    std::size_t used = session.onData(ch.data(), ch.available(), out);
                    ch.consume(used);
                }
            } else {
                bool mayWait = ch.hasPendingInput() || registry.setIdle(token, true);
                if (!mayWait) {
                    out = session.onShutdown();
                    reason = "shutdown";
                } else {
                    // RFC 4954 4: an AUTH line may be 12288 octets; the command parser applies the
                    // 512-octet limit (smtp.max_command_length) to every other command.
                    auto st = ch.readLine(line, std::max<std::size_t>(settings_.maxCommandLength, 12290),
                                          cfg.commandTimeout);
                    registry.setIdle(token, false);
                    if (st == net::ReadStatus::Ok) {
                        out = session.onLine(line);
                    } else if (st == net::ReadStatus::TooLong) {
                        out = session.onLineTooLong();
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
            ch.write(out.bytes);
            if (out.action == smtp::SmtpOutput::Action::StartTls) {
                ch.startTls(services_.tlsContext(), cfg.commandTimeout);
                registry.update(token, ch.socket());
                session.onTlsStarted();
                log.information("s=%s event=starttls ip=%s", sid, client.host());
            } else if (out.action == smtp::SmtpOutput::Action::Close) {
                break;
            }
        }
        ch.flush();
    } catch (const Poco::Exception& e) {
        reason = "error: " + e.displayText();
    } catch (const std::exception& e) {
        reason = std::string("error: ") + e.what();
    }
    registry.remove(token);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    if (services_.telemetry) services_.telemetry->sessionEnded("smtp", static_cast<double>(ms) / 1000.0);
    log.information("s=%s event=disconnect svc=smtp ip=%s reason=\"%s\" ms=%ld", sid, client.host(), reason,
                    static_cast<long>(ms));
}

}  // namespace postern::app
