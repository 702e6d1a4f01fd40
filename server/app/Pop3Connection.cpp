#include "app/Pop3Connection.h"

#include "app/GuardedWrites.h"
#include "app/SessionLog.h"
#include "core/ClientAddress.h"
#include "core/EventLine.h"
#include "net/DeadPeer.h"
#include "net/LineChannel.h"

#include <Poco/Exception.h>

#include <algorithm>
#include <chrono>

namespace postern::app {

namespace {
// RFC 2449 4: command lines are at most 255 octets, but SASL responses (RFC 5034 4)
// may be longer; the session rejects over-long commands itself.
constexpr std::size_t MaxPop3Line = 8192;
// After a line past that limit: how long and how much more input is read and thrown away so
// the client can read the -ERR before the connection closes (LineChannel::closeGracefully).
constexpr std::chrono::milliseconds LingerOnRefusal{2000};
constexpr std::size_t LingerMaxBytes = 1024 * 1024;
// RETR/TOP: the message part by part, each written as it is read.
bool sendBody(pop3::Pop3Body& body, GuardedWrites& ch) {
    std::string part;
    for (;;) {
        const pop3::Pop3Body::Status st = body.next(part);
        if (st == pop3::Pop3Body::Status::Failed) return false;
        ch.write(part);
        if (st == pop3::Pop3Body::Status::Done) return true;
    }
}
}  // namespace

Pop3Connection::Pop3Connection(const Poco::Net::StreamSocket& socket, Services& services,
                               const ListenerRuntime& listener, const pop3::Pop3Settings& settings)
    : TCPServerConnection(socket), services_(services), listener_(listener), settings_(settings) {}

void Pop3Connection::run() {
    SessionScope scope(socket(), services_, listener_, "pop3");
    if (!scope.proceed()) return;
    const std::string& sid = scope.id();
    const core::ClientAddress& client = scope.client();
    const config::ListenerConfig& lc = listener_.config;
    auto& log = sessionLogger();
    auto& registry = services_.registry;
    const auto token = scope.token();
    const auto timeout = listener_.timeouts.pop3Idle;
    std::string& reason = scope.reason;
    try {
        // A client gone without a close (Wi-Fi lost mid-session) would hold its maildrop
        // lock until pop3.idle_timeout: every reconnect in between got [IN-USE].
        net::noticeDeadPeerAfter(socket(), listener_.timeouts.pop3DeadClient);
        net::LineChannel ch(socket(), timeout);
        // Each reply, and each block of a message, that goes out has pop3.idle_timeout.
        GuardedWrites writes(ch, registry, token, timeout);
        if (lc.tls == config::TlsMode::Implicit) ch.startTls(services_.tlsContext(), timeout);
        pop3::Pop3Ports ports{services_.auth, services_.maildrops, services_.grants, services_.pop3Login};
        ports.hold = services_.hold;
        // A balancer that terminated TLS counts as TLS when listener.*.proxy_tls_counts says
        // so (PROXY v2 SSL TLV), as on the SMTP listeners.
        pop3::Pop3Session session(settings_, ports,
                                  pop3::SessionContext{sid, client, ch.isTls() || scope.balancerTls(),
                                                       services_.grantRefusal(client, scope.viaProxyHeader())});
        writes.write(session.greeting().bytes);
        bool tlsVersionPending = ch.isTls();  // login log: read at the first command over TLS
        std::string line;
        // pop3.login_timeout: from the connection on, however busy the client keeps it.
        using SteadyClock = std::chrono::steady_clock;
        const auto loginTimeout = listener_.timeouts.pop3Login;
        const SteadyClock::time_point loginBy = SteadyClock::now() + loginTimeout;
        auto loginLate = [&] { return loginTimeout.count() > 0 && !session.loggedIn() && SteadyClock::now() >= loginBy; };
        auto endLate = [&] {
            writes.write("-ERR Disconnected: no login in time\r\n");
            reason = "login timeout";
        };
        while (!session.isClosed()) {
            if (loginLate()) {
                endLate();
                break;
            }
            // Only a whole buffered command is read without waiting; any wait for the client
            // has pop3.idle_timeout for the whole command (a line or a TLS record trickled in
            // a byte at a time included), and no more than the login deadline before login.
            SteadyClock::time_point deadline = SteadyClock::now() + timeout;
            if (loginTimeout.count() > 0 && !session.loggedIn()) deadline = std::min(deadline, loginBy);
            bool mayWait = ch.hasBufferedLine() || registry.beginWait(token, deadline);
            if (!mayWait) {
                writes.write("-ERR [SYS/TEMP] Server shutting down\r\n");
                reason = "shutdown";
                break;
            }
            net::ReadStatus st = net::ReadStatus::Closed;
            try {
                st = ch.readLine(line, MaxPop3Line, timeout);
            } catch (const Poco::Exception&) {
                // A TLS handshake cut at its deadline fails in here: a timeout.
                if (registry.endWait(token)) reason = loginLate() ? "login timeout" : "timeout";
                throw;
            }
            if (registry.endWait(token)) {  // cut at its deadline
                if (loginLate()) {
                    endLate();
                    break;
                }
                st = net::ReadStatus::Timeout;
            }
            if (st == net::ReadStatus::TooLong) {
                // The rest of the line is never read: answer, then end the session.
                writes.write("-ERR Line too long\r\n");
                log.notice(core::EventLine::inSession(sid, "pop3.line_too_long").add("ip", client.host()).str());
                reason = "line too long";
                writes.closeGracefully(LingerOnRefusal, LingerMaxBytes);
                break;
            }
            if (st == net::ReadStatus::Timeout) {
                writes.write("-ERR Autologout; idle for too long\r\n");
                reason = "timeout";
                break;
            }
            if (st != net::ReadStatus::Ok) {
                if (registry.isShuttingDown()) {
                    writes.write("-ERR [SYS/TEMP] Server shutting down\r\n");
                    reason = "shutdown";
                } else {
                    reason = "dropped";
                }
                break;
            }
            if (tlsVersionPending) {
                session.setTlsVersion(ch.tlsVersion());
                tlsVersionPending = false;
            }
            pop3::Pop3Output out = session.onLine(line);
            writes.write(out.bytes);
            if (out.body && !sendBody(*out.body, writes)) {
                // "+OK" and part of the message are out: only a close tells the client that
                // the rest will not come. Nothing is deleted (no UPDATE state).
                reason = "message read failed";
                break;
            }
            if (out.action == pop3::Pop3Output::Action::StartTls) {
                writes.flush();  // the +OK and what was queued before it, under the deadline
                const std::size_t dropped = ch.startTls(services_.tlsContext(), timeout);
                session.onTlsStarted();
                tlsVersionPending = true;
                core::EventLine started = core::EventLine::inSession(sid, "stls").add("ip", client.host());
                if (dropped > 0) started.add("plaintext_dropped", dropped);  // CVE-2011-0411 class
                log.information(started.str());
            } else if (out.action == pop3::Pop3Output::Action::Close) {
                break;
            }
        }
        writes.flush();
        if (!session.isClosed()) session.onDisconnect();  // no UPDATE state: nothing deleted
    } catch (const Poco::TimeoutException&) {
        // A client that did not read a reply or a message block in time (GuardedWrites).
        if (reason != "login timeout") reason = "timeout";
    } catch (const Poco::Exception& e) {
        // A timeout's goodbye may fail too (a TLS handshake cut at its deadline).
        if (reason != "timeout" && reason != "login timeout") reason = "error: " + e.displayText();
    } catch (const std::exception& e) {
        if (reason != "timeout" && reason != "login timeout") reason = std::string("error: ") + e.what();
    }
}

}  // namespace postern::app
