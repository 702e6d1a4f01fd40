#include "app/ListenerFactory.h"

#include "app/Pop3Connection.h"
#include "app/SessionLog.h"
#include "app/SmtpConnection.h"
#include "core/EventLine.h"

#include <Poco/Net/StreamSocket.h>

namespace postern::app {

ConnectionFactory::ConnectionFactory(Services& services, const config::ListenerConfig& listener)
    : services_(services), listener_(listener),
      runtime_{listener, listener.proxyProtocol ? core::NetworkList::parse(listener.proxyTrusted) : core::NetworkList()} {
    const auto& c = services.config;
    bool tlsAvailable = services.hasTls() && listener.tls == config::TlsMode::StartTls;
    smtp_.hostname = c.hostname;
    smtp_.role = listener.role == config::SmtpRole::Submission ? smtp::Role::Submission : smtp::Role::Mx;
    smtp_.tlsAvailable = tlsAvailable;
    smtp_.allowPlaintextAuth = c.smtp.allowPlaintextAuth;
    smtp_.maxMessageSize = c.smtp.maxMessageSize;
    smtp_.maxRecipients = c.smtp.maxRecipients;
    smtp_.maxCommandLength = c.smtp.maxCommandLength;
    smtp_.maxLineLength = c.smtp.maxLineLength;
    smtp_.maxHeaderSize = c.smtp.maxHeaderSize;
    smtp_.maxErrors = c.smtp.maxErrors;
    smtp_.addMissingHeaders = c.smtp.addMissingHeaders;
    smtp_.grantOwnSendersOnly = c.popBeforeSmtp.ownSendersOnly;

    pop3_.allowPlaintextAuth = c.pop3.allowPlaintextAuth;
    pop3_.tlsAvailable = tlsAvailable;
    pop3_.greetingHost = c.hostname;
    pop3_.grantLifetime = std::chrono::duration_cast<std::chrono::seconds>(c.popBeforeSmtp.lifetime);
    pop3_.maxBadCommands = static_cast<std::size_t>(c.pop3.maxErrors);
}

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
        refuse(s, "421 4.3.2 Server shutting down, try again later\r\n", "-ERR [SYS/TEMP] Server shutting down\r\n");
        return false;
    }
    Poco::Net::TCPServer* server = server_.load();
    if (!server) return true;
    if (server->currentThreads() < server->maxThreads() || server->queuedConnections() < listener_.maxQueued)
        return true;
    try {
        sessionLogger().warning(core::EventLine("overload")
                                    .add("listener", listener_.name)
                                    .add("ip", s.peerAddress().host().toString())
                                    .add("threads", server->currentThreads())
                                    .add("queued", server->queuedConnections())
                                    .str());
    } catch (...) {
    }
    refuse(s, "421 4.3.2 Too many connections, try again later\r\n",
           "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
    return false;
}

}  // namespace postern::app
