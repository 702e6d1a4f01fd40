// The concrete services of one running daemon, wired once by PosternServer and shared
// (by reference) with every connection. The only place ports meet implementations.
#pragma once

#include "abuse/ConnectionGate.h"
#include "abuse/LogThrottle.h"
#include "app/ConnectionRegistry.h"
#include "app/Telemetry.h"
#include "config/ServerConfig.h"
#include "core/AuthService.h"
#include "core/EventCounters.h"
#include "core/OutboundLimiter.h"
#include "core/PolicyDelegate.h"
#include "core/GrantStore.h"
#include "core/MaildropService.h"
#include "core/MessageSink.h"
#include "core/UserDirectory.h"

#include <Poco/Net/Context.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>

namespace postern::app {

struct Services {
    Services(const config::ServerConfig& c, Poco::Net::Context::Ptr t, core::AuthService& a, core::UserDirectory& d,
             core::GrantStore* g, core::MessageSink& s, core::MaildropService& m, ConnectionRegistry& r)
        : config(c), auth(a), directory(d), grants(g), sink(s), maildrops(m), registry(r), tls_(std::move(t)) {}

    const config::ServerConfig& config;
    core::AuthService& auth;
    core::UserDirectory& directory;
    core::GrantStore* grants;     // null when POP-before-SMTP is off
    core::MessageSink& sink;
    core::MaildropService& maildrops;
    ConnectionRegistry& registry;
    abuse::ConnectionGate* gate = nullptr;       // per-IP connection limits
    core::OutboundLimiter* limiter = nullptr;    // outbound rate limits (SMTP)
    Telemetry* telemetry = nullptr;              // metrics (always set by PosternServer)
    core::EventCounters* events = nullptr;       // = telemetry, as the sessions see it
    core::PolicyDelegate* delegate = nullptr;    // policy delegation (policy.service); null when off

    // Logs `line` at warning level the first time `key` is seen (misconfiguration
    // reports such as "balancer sends no PROXY header": loud once, not once per connection).
    void logOnce(const std::string& key, const std::string& line);

    // Refused connections are logged once per listener, reason and client per minute.
    abuse::LogThrottle refusalLog{std::chrono::minutes(1)};

    // Short unique session id for log lines ("s=...").
    std::string nextSessionId();

    // The current server TLS context (null when no certificate is configured). SIGHUP
    // swaps in a new one; sessions already in TLS keep theirs.
    Poco::Net::Context::Ptr tlsContext() const {
        std::lock_guard lock(tlsMutex_);
        return tls_;
    }
    void setTlsContext(Poco::Net::Context::Ptr ctx) {
        std::lock_guard lock(tlsMutex_);
        tls_ = std::move(ctx);
    }
    bool hasTls() const { return !tlsContext().isNull(); }

private:
    std::mutex onceMutex_;
    std::set<std::string> logged_;
    mutable std::mutex tlsMutex_;
    Poco::Net::Context::Ptr tls_;
    std::atomic<std::uint64_t> counter_{0};
};

}  // namespace postern::app
