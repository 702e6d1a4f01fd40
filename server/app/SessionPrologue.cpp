#include "app/SessionPrologue.h"

#include "app/SessionLog.h"
#include "core/EventLine.h"
#include "net/LineChannel.h"

#include <Poco/Net/NetException.h>

#include <cerrno>
#include <chrono>
#include <system_error>

#include <poll.h>
#include <sys/socket.h>

namespace postern::app {

void refuseConnection(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                      const char* smtp, const char* pop) {
    const config::ListenerConfig& l = listener.config;
    const std::string msg = l.protocol == config::Protocol::Pop3 ? pop : smtp;
    if (msg.empty()) return;
    const auto wait = listener.timeouts.refusal;
    if (l.tls == config::TlsMode::Implicit) {
        auto ctx = services.tlsContext();
        if (ctx.isNull()) return;
        // The handshake's limit is per read: a client dripping its ClientHello holds this
        // thread for long, and refused clients are not counted by the per-IP gate. So only
        // connections.tls_refusals of them at once get it; the others are just closed.
        if (listener.tlsRefusing.fetch_add(1) >= listener.timeouts.tlsRefusals) {
            listener.tlsRefusing.fetch_sub(1);
            return;
        }
        struct Release {
            std::atomic<unsigned>& n;
            ~Release() { n.fetch_sub(1); }
        } release{listener.tlsRefusing};
        std::optional<net::LineChannel> ch;
        try {
            ch.emplace(socket, wait);
            ch->startTls(ctx, wait);
            ch->write(msg);
            ch->closeGracefully(std::chrono::milliseconds(1000), 64 * 1024);
        } catch (...) {
            // handshake failed or timed out: nothing more we can say
        }
        return;
    }
    try {
        socket.setSendTimeout(Poco::Timespan(static_cast<long>(wait.count()) * 1000));
        socket.sendBytes(msg.data(), static_cast<int>(msg.size()));
        // Lingering close: if the client already sent data, closing with it unread makes
        // the kernel send RST, which can destroy our reply before the client reads it.
        socket.shutdownSend();
        // One second in all, not per read: a client trickling a byte a second held this
        // session thread for 16 s per refused connection (review finding).
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        char sink[4096];
        for (int i = 0; i < 16; ++i) {
            const auto left = std::chrono::duration_cast<std::chrono::microseconds>(until - std::chrono::steady_clock::now());
            if (left.count() <= 0) break;
            socket.setReceiveTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(left.count())));
            if (socket.receiveBytes(sink, sizeof sink) <= 0) break;
        }
    } catch (...) {
        // the client is gone; nothing to tell it
    }
}

namespace {

// Bytes the client has already sent (without waiting beyond `wait`), peeked, not consumed.
std::string peekEarly(Poco::Net::StreamSocket& socket, std::chrono::milliseconds wait) {
    try {
        // poll(2) on the descriptor: POCO's Socket::poll makes (and closes) an epoll
        // instance per call, four system calls where one does.
        pollfd p{socket.impl()->sockfd(), POLLIN, 0};
        int rc;
        do rc = ::poll(&p, 1, static_cast<int>(wait.count()));
        while (rc < 0 && errno == EINTR);
        if (rc <= 0) return {};
        char buf[16];
        int n = socket.receiveBytes(buf, sizeof buf, MSG_PEEK);
        return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("\0", 1);
    } catch (...) {
        return {};
    }
}

bool looksLikeProxyHeader(const std::string& b) {
    static const std::string v2("\r\n\r\n\0\r\nQUIT\n", 12);  // PROXY v2 signature
    if (b.rfind("PROXY ", 0) == 0) return true;
    std::size_t n = std::min(b.size(), v2.size());
    return n >= 4 && b.compare(0, n, v2, 0, n) == 0;
}

}  // namespace

Prologue runPrologue(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                     const std::string& sid) {
    Prologue p;
    const config::ListenerConfig& l = listener.config;
    auto& log = sessionLogger();
    core::ClientAddress peer;
    try {
        peer = core::ClientAddress::fromSocket(socket.peerAddress());
    } catch (const Poco::Exception&) {
        p.reason = "gone";
        return p;
    }
    p.client = peer;

    if (l.proxyProtocol) {
        if (listener.trusted.contains(peer.ip)) {
            // A trusted balancer must start with a valid header; the header is read before
            // any TLS handshake and nothing beyond it is consumed.
            net::ProxyHeaderReader reader;
            net::ProxyReadResult r = reader.read(socket, listener.timeouts.proxyHeader);
            if (r.status != net::ProxyReadStatus::Ok) {
                if (auto suppressed = services.proxyInvalidLog.admit(peer.host())) {
                    core::EventLine line("proxy.invalid");
                    line.add("listener", l.name)
                        .add("balancer", peer.host())
                        .text("error",
                              r.status == net::ProxyReadStatus::Timeout ? std::string("no header in time") : r.error)
                        .text("fix", "enable send-proxy-v2 (or send-proxy) for this server on the balancer");
                    if (*suppressed > 0) line.add("suppressed", *suppressed);
                    log.warning(line.str());
                }
                p.reason = "proxy header invalid";
                return p;
            }
            if (r.header.local) {
                // LOCAL command (balancer health check) or UNKNOWN family: never let the
                // balancer's own address stand in for a client; answer nothing and close.
                p.reason = "proxy local (health check)";
                return p;
            }
            p.client = core::ClientAddress::fromSocket(r.header.source);
            p.server = core::ClientAddress::fromSocket(r.header.destination);
            p.balancerTls = l.proxyTlsCounts && r.header.ssl && r.header.ssl->isTls();
        } else if (looksLikeProxyHeader(peekEarly(
                       socket, l.tls == config::TlsMode::Implicit ? listener.timeouts.proxyHeader
                                                                   : listener.timeouts.proxyDetectWait))) {
            // A balancer we do not trust (or a spoofing client): a header here must never be
            // believed, and a misconfigured balancer must be loud. Wait a little: on plain
            // listeners the server speaks first, so a direct client sends nothing meanwhile.
            if (auto suppressed = services.proxyUntrustedLog.admit(peer.host())) {
                core::EventLine line("proxy.untrusted");
                line.add("listener", l.name)
                    .add("source", peer.host())
                    .text("fix", "if this is your balancer, add it to listener." + l.name + ".proxy_trusted");
                if (*suppressed > 0) line.add("suppressed", *suppressed);
                log.warning(line.str());
            }
            p.reason = "proxy header from untrusted source";
            return p;
        }
    }

    p.admission = services.gate.admit(l.name, p.client);
    if (!p.admission) {
        const abuse::Refusal refusal = p.admission.refusal();
        std::string why = abuse::refusalName(refusal);
        // One line per listener, reason and client per minute, naming how many were not logged.
        if (auto suppressed = services.refusalLog.admit(l.name + ' ' + why + ' ' + p.client.host()))
            log.warning(core::EventLine::inSession(sid, "conn.refuse")
                            .add("listener", l.name)
                            .add("ip", p.client.host())
                            .add("reason", why)
                            .add("suppressed", *suppressed)
                            .str());
        services.telemetry.connectionRefused(l.name, why);
        const bool global = refusal == abuse::Refusal::TooManySessions;
        refuseConnection(socket, services, listener,
                    global ? "421 4.7.0 Server busy, too many connections, try again later\r\n"
                    : refusal == abuse::Refusal::RateFromIp
                        ? "421 4.7.0 Too many new connections from your address, try again later\r\n"
                        : "421 4.7.0 Too many connections from your address, try again later\r\n",
                    global ? "-ERR [SYS/TEMP] Server busy, too many connections, try again later\r\n"
                    : refusal == abuse::Refusal::RateFromIp
                        ? "-ERR [SYS/TEMP] Too many new connections from your address, try again later\r\n"
                        : "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n");
        p.reason = "refused: " + why;
        return p;
    }

    // postscreen's pregreet test: a client that talks before the greeting is a bot that
    // does not wait for the server (RFC 5321 4.3.1: the client waits for the 220).
    if (l.protocol == config::Protocol::Smtp && l.role == config::SmtpRole::Mx && l.tls != config::TlsMode::Implicit &&
        !p.balancerTls) {
        std::string early = peekEarly(socket, listener.timeouts.earlyTalkerWait);
        if (!early.empty()) {
            log.warning(core::EventLine::inSession(sid, "conn.refuse")
                            .add("listener", l.name)
                            .add("ip", p.client.host())
                            .add("reason", "early_talker")
                            .str());
            services.telemetry.connectionRefused(l.name, "early_talker");
            refuseConnection(socket, services, listener, "554 5.5.1 Protocol error: data sent before the greeting\r\n", "");
            p.reason = "early talker";
            return p;
        }
    }
    p.proceed = true;
    return p;
}

SessionScope::SessionScope(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                           const char* service)
    : services_(services),
      service_(service),
      started_(std::chrono::steady_clock::now()),
      id_(services.nextSessionId()),
      prologue_(runPrologue(socket, services, listener, id_)) {
    const std::string& name = listener.config.name;
    services_.telemetry.connectionOpened(name);
    sessionLogger().information(core::EventLine::inSession(id_, "connect")
                                    .add("svc", service_)
                                    .add("listener", name)
                                    .add("ip", prologue_.client.host())
                                    .add("port", prologue_.client.port)
                                    .str());
    if (!prologue_.proceed) return;
    try {
        token_ = services_.registry.add(socket);
    } catch (const std::system_error& e) {
        prologue_.proceed = false;  // out of descriptors: no deadline could be held, so no session
        prologue_.reason = e.what();
    }
}

core::ClientAddress SessionScope::serverAddress(const Poco::Net::StreamSocket& socket) const {
    if (prologue_.server) return *prologue_.server;
    return core::ClientAddress::fromSocket(socket.address());  // one getsockname(2)
}

SessionScope::~SessionScope() {
    auto& log = sessionLogger();
    if (!prologue_.proceed) {
        log.information(core::EventLine::inSession(id_, "disconnect")
                            .add("svc", service_)
                            .add("ip", prologue_.client.host())
                            .text("reason", prologue_.reason)
                            .add("ms", 0)
                            .str());
        return;
    }
    services_.registry.remove(token_);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_).count();
    services_.telemetry.sessionEnded(service_, static_cast<double>(ms) / 1000.0);
    log.information(core::EventLine::inSession(id_, "disconnect")
                        .add("svc", service_)
                        .add("ip", prologue_.client.host())
                        .text("reason", reason)
                        .add("ms", static_cast<long>(ms))
                        .str());
}

}  // namespace postern::app
