#include "app/Pop3Connection.h"

#include "app/SessionLog.h"
#include "core/ClientAddress.h"
#include "net/LineChannel.h"

#include <Poco/Exception.h>

#include <chrono>

namespace postern::app {

namespace {
// RFC 2449 4: command lines are at most 255 octets, but SASL responses (RFC 5034 4)
// may be longer; the session rejects over-long commands itself.
constexpr std::size_t MaxPop3Line = 8192;
}  // namespace

Pop3Connection::Pop3Connection(const Poco::Net::StreamSocket& socket, Services& services,
                               const ListenerRuntime& listener, const pop3::Pop3Settings& settings)
    : TCPServerConnection(socket), services_(services), listener_(listener), settings_(settings) {}

void Pop3Connection::run() {
    const auto started = std::chrono::steady_clock::now();
    const std::string sid = services_.nextSessionId();
    Prologue prologue = runPrologue(socket(), services_, listener_, sid);
    const core::ClientAddress& client = prologue.client;
    const config::ListenerConfig& lc = listener_.config;
    if (services_.telemetry) services_.telemetry->connectionOpened(lc.name);
    auto& log = sessionLogger();
    log.information("s=%s event=connect svc=pop3 listener=%s ip=%s port=%hu", sid, lc.name, client.host(),
                    client.port);

    if (!prologue.proceed) {
        log.information("s=%s event=disconnect svc=%s ip=%s reason=\"%s\" ms=0", sid, std::string("pop3"), client.host(),
                        prologue.reason);
        return;
    }

    auto& registry = services_.registry;
    const auto token = registry.add(socket());
    const auto timeout = services_.config.pop3.idleTimeout;
    std::string reason = "quit";
    try {
        net::LineChannel ch(socket());
        if (lc.tls == config::TlsMode::Implicit) {
            ch.startTls(services_.tlsContext(), timeout);
            registry.update(token, ch.socket());
        }
        pop3::Pop3Ports ports{services_.auth, services_.maildrops, services_.grants};
        pop3::Pop3Session session(settings_, ports, pop3::SessionContext{sid, client, ch.isTls()});
        ch.write(session.greeting().bytes);
        std::string line;
        while (!session.isClosed()) {
            bool mayWait = ch.hasPendingInput() || registry.setIdle(token, true);
            if (!mayWait) {
                ch.write("-ERR [SYS/TEMP] Server shutting down\r\n");
                reason = "shutdown";
                break;
            }
            auto st = ch.readLine(line, MaxPop3Line, timeout);
            registry.setIdle(token, false);
            if (st == net::ReadStatus::TooLong) {
                ch.write("-ERR Line too long\r\n");
                continue;
            }
            if (st == net::ReadStatus::Timeout) {
                ch.write("-ERR Autologout; idle for too long\r\n");
                reason = "timeout";
                break;
            }
            if (st != net::ReadStatus::Ok) {
                if (registry.isShuttingDown()) {
                    ch.write("-ERR [SYS/TEMP] Server shutting down\r\n");
                    reason = "shutdown";
                } else {
                    reason = "dropped";
                }
                break;
            }
            pop3::Pop3Output out = session.onLine(line);
            ch.write(out.bytes);
            if (out.action == pop3::Pop3Output::Action::StartTls) {
                ch.startTls(services_.tlsContext(), timeout);
                registry.update(token, ch.socket());
                session.onTlsStarted();
                log.information("s=%s event=stls ip=%s", sid, client.host());
            } else if (out.action == pop3::Pop3Output::Action::Close) {
                break;
            }
        }
        ch.flush();
        if (!session.isClosed()) session.onDisconnect();  // no UPDATE state: nothing deleted
    } catch (const Poco::Exception& e) {
        reason = "error: " + e.displayText();
    } catch (const std::exception& e) {
        reason = std::string("error: ") + e.what();
    }
    registry.remove(token);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    if (services_.telemetry) services_.telemetry->sessionEnded("pop3", static_cast<double>(ms) / 1000.0);
    log.information("s=%s event=disconnect svc=pop3 ip=%s reason=\"%s\" ms=%ld", sid, client.host(), reason,
                    static_cast<long>(ms));
}

}  // namespace postern::app
