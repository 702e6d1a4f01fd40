// The concrete services of one running daemon, wired once by app/Daemon and shared
// (by reference) with every connection. The only place ports meet implementations.
#pragma once

#include "abuse/ConnectionGate.h"
#include "abuse/LogThrottle.h"
#include "app/ConnectionRegistry.h"
#include "app/Telemetry.h"
#include "core/AccountSecurity.h"
#include "core/AuthService.h"
#include "core/EventCounters.h"
#include "core/MailboxUsage.h"
#include "core/OutboundLimiter.h"
#include "core/MilterPort.h"
#include "core/PolicyDelegate.h"
#include "core/GrantStore.h"
#include "core/MaildropService.h"
#include "core/MessageSink.h"
#include "core/Network.h"
#include "core/UserDirectory.h"

#include <Poco/Net/Context.h>

#include "core/Pop3Login.h"

#include <atomic>
#include <mutex>
#include <string>

namespace postern::app {

// Complete at construction: every port is a reference, except `grants` and `delegate`
// (optional features: null = off).
struct Services {
    Services(Poco::Net::Context::Ptr t, core::AuthService& a, core::UserDirectory& d, core::GrantStore* g,
             core::MessageSink& s, core::MaildropService& m, ConnectionRegistry& r, abuse::ConnectionGate& gt,
             core::OutboundLimiter& l, Telemetry& tm, core::PolicyDelegate* pd)
        : auth(a), directory(d), grants(g), sink(s), maildrops(m), registry(r), gate(gt), limiter(l), telemetry(tm),
          events(tm), delegate(pd), tls_(std::move(t)) {}

    core::AuthService& auth;
    core::UserDirectory& directory;
    // Null when POP-before-SMTP is off (pop_before_smtp.lifetime = 0). Kept an explicit
    // optional rather than a no-op store: the sessions already treat "no store" as "feature
    // off" (POP3 records no grant, SMTP never consults one and cannot answer 4xx for an
    // unreachable store), which a stand-in object would have to imitate.
    core::GrantStore* grants;
    core::MessageSink& sink;
    core::MaildropService& maildrops;
    ConnectionRegistry& registry;
    abuse::ConnectionGate& gate;       // per-IP connection limits
    core::OutboundLimiter& limiter;    // outbound rate limits (SMTP)
    Telemetry& telemetry;              // metrics
    core::EventCounters& events;       // = telemetry, as the sessions see it
    core::PolicyDelegate* delegate;    // policy delegation (policy.service); null when off
    // Cluster: a POP3 login's penalty check, lease and grant in one statement; null = apart.
    core::Pop3Login* pop3Login = nullptr;
    core::MilterFactory* milters = nullptr;  // milters (milter.*); null when none is configured
    core::AccountHold* hold = nullptr; // compromised-account holds (account_security.*); null when off
    const core::MailboxUsage* usage = nullptr;  // what mailboxes hold, for quotas (the Maildir store)
    // Addresses that never earn or relay on a POP-before-SMTP grant (GrantSettings).
    core::NetworkList grantBalancers;  // every listener's proxy_trusted
    core::NetworkList grantExcluded;   // pop_before_smtp.exclude_networks

    // Why `client` may not earn or relay on a grant ("balancer_address", "excluded_network"),
    // or nullptr when it may. A balancer's address counts only for a connection it made
    // without a PROXY header (`viaProxyHeader` false): the socket's peer is the balancer, not
    // a client; a client address a header gave may lie in a balancer network (a VPN range).
    const char* grantRefusal(const core::ClientAddress& client, bool viaProxyHeader) const {
        if (!viaProxyHeader && grantBalancers.contains(client.ip)) return "balancer_address";
        if (grantExcluded.contains(client.ip)) return "excluded_network";
        return nullptr;
    }

    // Misconfiguration reports ("balancer sends no PROXY header", "PROXY header from an
    // untrusted source"): logged at warning level once per source address and 10 minutes, with the
    // number of repeats not logged (suppressed=N), not once per connection. Separate
    // throttles, so a flood of untrusted sources cannot crowd out a balancer's report.
    abuse::LogThrottle proxyInvalidLog{std::chrono::minutes(10), 1024};
    abuse::LogThrottle proxyUntrustedLog{std::chrono::minutes(10)};

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
    mutable std::mutex tlsMutex_;
    Poco::Net::Context::Ptr tls_;
    std::atomic<std::uint64_t> counter_{0};
};

}  // namespace postern::app
