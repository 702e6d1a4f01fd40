// What happens on a new connection before any protocol is spoken: the real client
// address (PROXY header from a trusted balancer), the per-IP connection gate and, for
// SMTP MX listeners, the early-talker check. Shared by SMTP and POP3 connections.
#pragma once

#include "abuse/ConnectionGate.h"
#include "app/ModuleSettings.h"
#include "app/Services.h"
#include "config/ServerConfig.h"
#include "core/ClientAddress.h"
#include "core/Network.h"
#include "net/ProxyProtocol.h"

#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>

namespace postern::app {

// Per-listener state built once by the ConnectionFactory.
struct ListenerRuntime {
    const config::ListenerConfig& config;
    core::NetworkList trusted;  // balancers allowed to send a PROXY header (proxy_trusted)
    SessionTimeouts timeouts;   // applied by the connection around the protocol session
    // Refusals being told over TLS now (implicit-TLS listeners; at most timeouts.tlsRefusals).
    mutable std::atomic<unsigned> tlsRefusing{0};
};

struct Prologue {
    bool proceed = false;         // false: the connection was answered/closed; stop here
    core::ClientAddress client;   // from the socket or the PROXY header
    // The address the client connected to, from the PROXY header (the balancer's public
    // address); none: the socket's own end.
    std::optional<core::ClientAddress> server;
    bool balancerTls = false;     // v2 header says the balancer terminated TLS (and that counts)
    abuse::Admission admission;   // holds the per-IP slot for the session's lifetime
    std::string reason;           // why not proceeding (for the disconnect log line)
};

// Tells a refused client why (`smtp` or `pop`, by the listener's protocol), in a way it can
// read, then closes. On implicit-TLS listeners the handshake is completed first (bounded by
// connections.refusal_timeout per read, and only connections.tls_refusals at once; beyond
// that the connection is just closed): a TLS client would otherwise see only an EOF and
// report "connection lost" instead of the reason. Blocks; never throws.
void refuseConnection(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                      const char* smtp, const char* pop);

// Never throws for client behaviour; returns proceed=false with a reason instead.
Prologue runPrologue(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                     const std::string& sessionId);

// One session's bookkeeping, the same for SMTP and POP3: a session id, the prologue, the
// connect line, the drain registry while the session runs, and at the end the disconnect
// line (with `reason`) and the session-length metric. Owned by the connection's run().
class SessionScope {
public:
    SessionScope(Poco::Net::StreamSocket& socket, Services& services, const ListenerRuntime& listener,
                 const char* service);
    ~SessionScope();
    SessionScope(const SessionScope&) = delete;
    SessionScope& operator=(const SessionScope&) = delete;

    bool proceed() const { return prologue_.proceed; }
    const std::string& id() const { return id_; }
    const core::ClientAddress& client() const { return prologue_.client; }
    bool balancerTls() const { return prologue_.balancerTls; }
    // The client address came from a trusted balancer's PROXY header (not the socket).
    bool viaProxyHeader() const { return prologue_.server.has_value(); }
    // The address and port the client connected to: from the PROXY header behind a
    // balancer (as Postfix's smtpd_peer_from_haproxy), else the socket's local end.
    core::ClientAddress serverAddress(const Poco::Net::StreamSocket& socket) const;
    ConnectionRegistry::Token token() const { return token_; }

    std::string reason = "quit";  // why the session ended, for the disconnect line

private:
    Services& services_;
    const char* service_;
    const std::chrono::steady_clock::time_point started_;
    const std::string id_;
    Prologue prologue_;
    ConnectionRegistry::Token token_ = 0;
};

}  // namespace postern::app
