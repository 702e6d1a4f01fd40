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
#include <memory>

namespace Poco {
class ThreadPool;
}

namespace postern::app {

// Owned by the listener's TCPServer (which takes ownership of the factory).
class ConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
public:
    // `settings` must outlive the factory (the daemon owns it).
    ConnectionFactory(Services& services, const ListenerSettings& settings);
    Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override;
    const ListenerRuntime& runtime() const { return runtime_; }

private:
    Services& services_;
    const config::ListenerConfig& listener_;
    ListenerRuntime runtime_;
    const smtp::SmtpSettings smtp_;
    const pop3::Pop3Settings pop3_;
};

// Runs in the listener's acceptor thread before a connection is queued. When every
// session thread is busy and the wait queue is full, POCO would close the socket
// without a word; we answer 421 (SMTP) or -ERR [SYS/TEMP] (POP3) and close. On an
// implicit-TLS listener (465, 995) that needs a handshake, which the acceptor must not wait
// for: a small pool of its own (connections.tls_refusals threads, shared with the sessions'
// own refusals through the listener's count) does it; beyond that the connection is closed.
class OverloadFilter : public Poco::Net::TCPServerConnectionFilter {
public:
    // Refusals are counted in postern_connections_refused_total{reason="overload" or
    // "shutting_down"}: the capacity alert of a node (review finding: they were only logged).
    // `runtime` is the listener's (its ConnectionFactory's); both must outlive the filter.
    OverloadFilter(const ListenerRuntime& runtime, Services& services, ConnectionRegistry& registry,
                   Telemetry& telemetry);
    ~OverloadFilter() override;
    void attach(Poco::Net::TCPServer* server) { server_ = server; }
    bool accept(const Poco::Net::StreamSocket& socket) override;

private:
    void refuse(Poco::Net::StreamSocket& s, const char* smtpText, const char* popText);

    const ListenerRuntime& runtime_;
    const config::ListenerConfig& listener_;
    Services& services_;
    ConnectionRegistry& registry_;
    Telemetry& telemetry_;
    std::unique_ptr<Poco::ThreadPool> tlsRefusers_;  // implicit TLS with tls_refusals > 0 only
    std::atomic<Poco::Net::TCPServer*> server_{nullptr};
    // One overload line per client address a minute (suppressed=N counts the others): under
    // overload the log must not add to the load.
    abuse::LogThrottle overloadLog_{std::chrono::minutes(1)};
};

}  // namespace postern::app
