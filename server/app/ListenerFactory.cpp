#include "app/ListenerFactory.h"

#include "app/Pop3Connection.h"
#include "app/SessionLog.h"
#include "app/SmtpConnection.h"
#include "core/EventLine.h"

#include <Poco/Net/StreamSocket.h>
#include <Poco/Runnable.h>
#include <Poco/ThreadPool.h>

#include <memory>

namespace postern::app {

ConnectionFactory::ConnectionFactory(Services& services, const ListenerSettings& settings)
    : services_(services), listener_(settings.listener),
      runtime_{settings.listener,
               settings.listener.proxyProtocol ? core::NetworkList::parse(settings.listener.proxyTrusted)
                                               : core::NetworkList(),
               settings.timeouts},
      smtp_(settings.smtp), pop3_(settings.pop3) {}

Poco::Net::TCPServerConnection* ConnectionFactory::createConnection(const Poco::Net::StreamSocket& socket) {
    if (listener_.protocol == config::Protocol::Pop3) return new Pop3Connection(socket, services_, runtime_, pop3_);
    return new SmtpConnection(socket, services_, runtime_, smtp_);
}

namespace {

// One implicit-TLS refusal on a thread of the filter's pool: the PROXY header of a trusted
// balancer (behind HAProxy every connection starts with one), the handshake, the answer, the
// close. Registered with the drain registry while it runs, as an idle wait with a deadline of
// connections.refusal_timeout (+ server.proxy_timeout behind a balancer) + 1 s for all of it:
// a stop wakes it at once (a handshake in progress then fails), and a client that drips its
// handshake is cut at the deadline (its read side; both sides refusal_timeout later), not
// held per byte. Once shutting down, a refusal here is a plain close (the listeners close
// at once then anyway).
class TlsRefusal : public Poco::Runnable {
public:
    TlsRefusal(const Poco::Net::StreamSocket& s, Services& services, const ListenerRuntime& runtime,
               ConnectionRegistry& registry, const char* smtp, const char* pop)
        : socket_(s), services_(services), runtime_(runtime), registry_(registry), smtp_(smtp), pop_(pop),
          token_(registry.add(s)) {}
    ~TlsRefusal() override { registry_.remove(token_); }
    void run() override {
        std::unique_ptr<TlsRefusal> self(this);  // the pool does not own its targets
        // Past the socket's own per-read timeout (refusal_timeout), so a silent client ends
        // by that first.
        const auto bound = runtime_.timeouts.refusal + std::chrono::seconds(1) +
                           (runtime_.config.proxyProtocol ? runtime_.timeouts.proxyHeader : std::chrono::milliseconds(0));
        if (!registry_.beginWait(token_, std::chrono::steady_clock::now() + bound, /*idle=*/true)) return;  // stopping
        try {
            if (runtime_.config.proxyProtocol &&
                runtime_.trusted.contains(core::ClientAddress::fromSocket(socket_.peerAddress()).ip)) {
                // Consumes the header only; the ClientHello stays for the handshake.
                const net::ProxyReadResult r = net::ProxyHeaderReader().read(socket_, runtime_.timeouts.proxyHeader);
                if (r.status != net::ProxyReadStatus::Ok || r.header.local) return;
            }
        } catch (...) {
            return;  // the client went away
        }
        refuseConnection(socket_, services_, runtime_, smtp_, pop_);
    }

private:
    Poco::Net::StreamSocket socket_;
    Services& services_;
    const ListenerRuntime& runtime_;
    ConnectionRegistry& registry_;
    const char* smtp_;
    const char* pop_;
    ConnectionRegistry::Token token_;
};

}  // namespace

OverloadFilter::OverloadFilter(const ListenerRuntime& runtime, Services& services, ConnectionRegistry& registry,
                               Telemetry& telemetry)
    : runtime_(runtime), listener_(runtime.config), services_(services), registry_(registry), telemetry_(telemetry) {
    const unsigned n = runtime.timeouts.tlsRefusals;
    if (listener_.tls == config::TlsMode::Implicit && n > 0)
        tlsRefusers_ = std::make_unique<Poco::ThreadPool>("refuse-" + listener_.name, 1, static_cast<int>(n), 60,
                                                          static_cast<int>(listener_.stackSize));
}

// The pool is left to the process exit, as the listeners' own pools are (see Daemon::drain).
OverloadFilter::~OverloadFilter() { (void)tlsRefusers_.release(); }

void OverloadFilter::refuse(Poco::Net::StreamSocket& s, const char* smtpText, const char* popText) {
    if (listener_.tls == config::TlsMode::Implicit) {
        // Nothing can be said before the handshake, and the acceptor must not do it.
        if (!tlsRefusers_) return;
        std::unique_ptr<TlsRefusal> job;
        try {
            job = std::make_unique<TlsRefusal>(s, services_, runtime_, registry_, smtpText, popText);
            tlsRefusers_->start(*job);
            (void)job.release();  // the job deletes itself when it has run
        } catch (...) {
            // every refusal thread busy (or none could be made, or no descriptor left): just close
        }
        return;
    }
    try {
        s.setSendTimeout(Poco::Timespan(1, 0));
        std::string msg = listener_.protocol == config::Protocol::Pop3 ? popText : smtpText;
        s.sendBytes(msg.data(), static_cast<int>(msg.size()));
    } catch (...) {
        // the client went away; nothing to tell it
    }
}

bool OverloadFilter::accept(const Poco::Net::StreamSocket& socket) {
    Poco::Net::StreamSocket s(socket);
    if (registry_.isShuttingDown()) {
        telemetry_.connectionRefused(listener_.name, "shutting_down");
        refuse(s, "421 4.3.2 Server shutting down, try again later\r\n", "-ERR [SYS/TEMP] Server shutting down\r\n");
        return false;
    }
    Poco::Net::TCPServer* server = server_.load();
    if (!server) return true;
    // Refused exactly when POCO's dispatcher would drop it without a word: its queue is full
    // (it queues whenever no thread is idle). Only this acceptor thread enqueues, so the queue
    // cannot grow between this check and the enqueue. (TCPServer::maxThreads() is the pool's
    // capacity, one more than the listener's max_threads: comparing threads never refused.)
    if (server->queuedConnections() < listener_.maxQueued) return true;
    try {
        const std::string ip = s.peerAddress().host().toString();
        if (auto suppressed = overloadLog_.admit(ip))
            sessionLogger().warning(core::EventLine("overload")
                                        .add("listener", listener_.name)
                                        .add("ip", ip)
                                        .add("threads", server->currentThreads())
                                        .add("queued", server->queuedConnections())
                                        .add("suppressed", *suppressed)
                                        .str());
    } catch (...) {
    }
    telemetry_.connectionRefused(listener_.name, "overload");
    refuse(s, "421 4.3.2 Too many connections, try again later\r\n",
           "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
    return false;
}

}  // namespace postern::app
