// Creates the session object for each accepted connection of one listener, and
// answers overload instead of letting POCO close silently.
#pragma once

#include "app/ModuleSettings.h"
#include "app/Services.h"
#include "app/SessionPrologue.h"
#include "config/ServerConfig.h"
#include "pop3/Pop3Session.h"
#include "smtp/SmtpSession.h"

#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>

#include <atomic>

namespace postern::app {

// Owned by the listener's TCPServer (which takes ownership of the factory).
class ConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
public:
    // `settings` must outlive the factory (the daemon owns it).
    ConnectionFactory(Services& services, const ListenerSettings& settings);
    Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override;

private:
    Services& services_;
    const config::ListenerConfig& listener_;
    ListenerRuntime runtime_;
    const smtp::SmtpSettings smtp_;
    const pop3::Pop3Settings pop3_;
};

// Runs in the listener's acceptor thread before a connection is queued. When every
// session thread is busy and the wait queue is full, POCO would close the socket
// without a word; we answer 421 (SMTP) or -ERR [SYS/TEMP] (POP3) and close.
class OverloadFilter : public Poco::Net::TCPServerConnectionFilter {
public:
    // Refusals are counted in postern_connections_refused_total{reason="overload" or
    // "shutting_down"}: the capacity alert of a node (review finding: they were only logged).
    OverloadFilter(const config::ListenerConfig& listener, ConnectionRegistry& registry, Telemetry& telemetry)
        : listener_(listener), registry_(registry), telemetry_(telemetry) {}
    void attach(Poco::Net::TCPServer* server) { server_ = server; }
    bool accept(const Poco::Net::StreamSocket& socket) override;

private:
    void refuse(Poco::Net::StreamSocket& s, const char* smtpText, const char* popText);

    const config::ListenerConfig& listener_;
    ConnectionRegistry& registry_;
    Telemetry& telemetry_;
    std::atomic<Poco::Net::TCPServer*> server_{nullptr};
    // One overload line per client address a minute (suppressed=N counts the others): under
    // overload the log must not add to the load.
    abuse::LogThrottle overloadLog_{std::chrono::minutes(1)};
};

}  // namespace postern::app
