#include "app/ListenerFactory.h"

#include "app/Pop3Connection.h"
#include "app/SessionLog.h"
#include "app/SmtpConnection.h"
#include "core/EventLine.h"

#include <Poco/Net/StreamSocket.h>

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

void OverloadFilter::refuse(Poco::Net::StreamSocket& s, const char* smtpText, const char* popText) {
    // Implicit-TLS listeners cannot say anything before the handshake: just close.
    if (listener_.tls == config::TlsMode::Implicit) return;
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
