#include "delivery/DeliveryAgent.h"

#include "delivery/DanePolicy.h"
#include "delivery/MessageExtensions.h"
#include "delivery/MessageSource.h"
#include "delivery/MtaStsRoute.h"
#include "core/EventLine.h"
#include "delivery/RetrySchedule.h"
#include "queue/FileOps.h"
#include "core/Utf8.h"

#include <Poco/Logger.h>
#include <Poco/Net/SocketAddress.h>

#include <algorithm>
#include <cctype>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::delivery {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.delivery"); }

std::string domainOf(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : core::asciiLower(address.substr(at + 1));
}

bool hasEightBit(const std::string& path, bool& readable) {
    readable = false;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    readable = true;
    char buf[64 * 1024];
    bool eight = false;
    while (!eight) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n < 0) readable = false;
            break;
        }
        eight = std::any_of(buf, buf + n, [](char c) { return static_cast<unsigned char>(c) > 127; });
    }
    ::close(fd);
    return eight;
}

std::pair<std::string, std::uint16_t> splitHostPort(const std::string& hp) {
    auto colon = hp.rfind(':');
    std::string host = hp.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return {host, static_cast<std::uint16_t>(std::stoi(hp.substr(colon + 1)))};
}

const char* policyName(TlsPolicy p) { return tlsPolicyName(p); }

}  // namespace

// --- ConnectionCache ---------------------------------------------------------------------

SmtpClient* ConnectionCache::find(const std::string& key) {
    SmtpClient* c = nullptr;
    bool old = false;
    {
        std::lock_guard lock(mutex_);
        auto it = clients_.find(key);
        if (it != clients_.end()) {
            c = it->second.client.get();
            old = tooOld(it->second);
        }
    }
    if (c) {
        if (!old && c->usable() && c->reset()) return c;
        drop(key);  // QUIT (if still possible) and close
    }
    if (!pool_) return nullptr;
    // An idle connection another worker (or this one) left in the shared pool.
    Clock::time_point opened;
    while (std::unique_ptr<SmtpClient> pooled = pool_->take(key, opened)) {
        // Owned by this cache before any I/O, so a shutdown (abortAll) reaches it.
        c = put(key, std::move(pooled));
        {
            std::lock_guard lock(mutex_);
            clients_[key].opened = opened;
        }
        if (c->reset()) {
            if (Poco::Logger& log = logger(); log.debug())
                log.debug(core::EventLine("delivery.connection_reuse").add("relay", c->relay()).str());
            return c;
        }
        drop(key);  // closed by the server meanwhile, or RSET refused: try the next one, else a new one
    }
    return nullptr;
}

SmtpClient* ConnectionCache::put(const std::string& key, std::unique_ptr<SmtpClient> client) {
    std::unique_ptr<SmtpClient> replaced;
    std::lock_guard lock(mutex_);
    if (aborted_) client->abort();  // shutdown: it never connects
    auto& slot = clients_[key];
    replaced = std::move(slot.client);
    slot.client = std::move(client);
    slot.opened = Clock::now();
    return slot.client.get();
}

void ConnectionCache::drop(const std::string& key) {
    std::unique_ptr<SmtpClient> gone;
    {
        std::lock_guard lock(mutex_);
        auto it = clients_.find(key);
        if (it == clients_.end()) return;
        gone = std::move(it->second.client);
        clients_.erase(it);
    }
    gone->quit();
}

void ConnectionCache::closeAll() {
    std::map<std::string, Entry> all;
    {
        std::lock_guard lock(mutex_);
        all.swap(clients_);
    }
    for (auto& [k, e] : all) e.client->quit();
}

bool ConnectionCache::parkAll() {
    if (!pool_) {
        closeAll();
        return false;
    }
    std::map<std::string, Entry> all;
    {
        std::lock_guard lock(mutex_);
        all.swap(clients_);
    }
    bool tell = false;
    for (auto& [k, e] : all) tell = pool_->park(k, std::move(e.client), e.opened) || tell;
    return tell;
}

void ConnectionCache::abortAll() {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    for (auto& [k, e] : clients_) e.client->abort();
}

// --- DeliveryAgent -----------------------------------------------------------------------

struct DeliveryAgent::Route {
    bool mx = true;            // MX lookup of `target` (a domain); else A/AAAA of a host
    std::string target;
    std::uint16_t port = 25;
    TlsPolicy policy = TlsPolicy::May;
    const Credentials* credentials = nullptr;
    bool requireTls = false;  // RFC 8689: verified TLS to a next hop offering REQUIRETLS, else 5.7.30
    bool mtaSts = false;      // MX route without an explicit per-domain TLS policy: MTA-STS may apply
    std::string key() const {
        return std::string(mx ? "mx:" : "host:") + target + ":" + std::to_string(port) + "/" + policyName(policy) +
               (credentials ? "/auth" : "") + (requireTls ? "/requiretls" : "");
    }
};

namespace {

// RFC 8689: REQUIRETLS raises any route to 'verify', except dane/dane-only, which stay (a
// DANE-authenticated session satisfies REQUIRETLS, RFC 8689 4.2.1; each host without DANE
// is raised to 'verify' in deliverRoute); "TLS-Required: No" (only without the
// REQUIRETLS parameter, which takes precedence) lowers 'encrypt'/'verify'/'dane'/'dane-only' to 'may': TLS is
// still tried, but the message may go in clear (section 5). Never on a route that logs in
// with the smarthost's password (delivery.relayhost_auth_file): the sender may waive the
// recipient's TLS policy, not the operator's protection of that secret, which under 'may'
// would go to whatever certificate a man in the middle shows.
template <typename RouteT>
void applyTlsRequirements(RouteT& route, bool requireTls, bool tlsNotRequired) {
    if (requireTls) {
        route.requireTls = true;
        if (route.policy != TlsPolicy::Dane && route.policy != TlsPolicy::DaneOnly) route.policy = TlsPolicy::Verify;
    } else if (tlsNotRequired && !route.credentials && route.policy != TlsPolicy::May &&
               route.policy != TlsPolicy::None) {
        route.policy = TlsPolicy::May;  // encrypt, verify, dane, dane-only: the recipient's DANE too
    }
    if (!requireTls && tlsNotRequired) route.mtaSts = false;  // RFC 8689 5: MTA-STS is ignored too
}

// Why a connected next hop cannot take this transaction (empty: it can): RFC 8689 4.2.1
// (REQUIRETLS needs a verified TLS session and the offer) and RFC 6531 3.4 (a non-ASCII
// envelope needs SMTPUTF8). Sets `status` to the enhanced code of the bounce.
std::string missingExtension(const SmtpClient& client, bool requireTls, bool needsUtf8, std::string& status) {
    if (requireTls && !client.tlsVerified()) {
        status = "5.7.30";
        return "REQUIRETLS: the session with " + client.relay() + " is not TLS with a verified certificate";
    }
    if (requireTls && !client.offersRequireTls()) {
        status = "5.7.30";
        return "REQUIRETLS: " + client.relay() + " does not offer REQUIRETLS";
    }
    if (needsUtf8 && !client.offersSmtpUtf8()) {
        status = "5.6.7";
        return "non-ASCII address and " + client.relay() + " does not offer SMTPUTF8";
    }
    return {};
}

}  // namespace

struct DeliveryAgent::Outcome {
    enum class Kind { Pending, Delivered, Temp, Perm } kind = Kind::Pending;
    SmtpReply reply;       // remote reply, or code 0 with a local reason
    std::string status;    // enhanced status for logs and the DSN
    std::string relay = "none";
    std::string remoteHost;
    bool tls = false;
    std::string tlsPolicy;     // tls_policy=: the policy in force with the host: dane, mta-sts, verify, ...
    std::string daneFailure;   // dane_fail=: why DANE refused the (last) host
    bool dsnPassedOn = false;  // the next hop offers DSN and got NOTIFY/ORCPT (RFC 3461 5.2)
    std::string mtaSts;        // why MTA-STS deferred it (empty: it did not)
};

DeliveryAgent::DeliveryAgent(const config::DeliveryConfig& config, std::string hostname, queue::OutboundQueue& queue,
                             MxResolver& resolver, BounceSender& bounces, ClientSettings clientSettings,
                             std::optional<Credentials> relayCredentials)
    : config_(config),
      hostname_(std::move(hostname)),
      queue_(queue),
      resolver_(resolver),
      bounces_(bounces),
      clientSettings_(std::move(clientSettings)),
      relayCredentials_(std::move(relayCredentials)) {}

Credentials DeliveryAgent::readCredentialsFile(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0)
        throw std::runtime_error("delivery.relayhost_auth_file " + path + ": " + queue::errnoText(errno));
    // A password file others can read is a leaked password: refuse to start.
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        throw std::runtime_error("delivery.relayhost_auth_file " + path + " must not be group/world-accessible (chmod 600)");
    std::string text;
    if (!queue::readFile(path, text)) throw std::runtime_error("cannot read " + path);
    std::string line = text.substr(0, text.find('\n'));
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0)
        throw std::runtime_error("delivery.relayhost_auth_file " + path + ": expected user:password");
    return Credentials{line.substr(0, colon), line.substr(colon + 1)};
}

DeliveryAgent::Route DeliveryAgent::routeFor(const std::string& domain) const {
    Route r;
    auto policy = config_.tlsPolicies.find(domain);
    r.policy = policy != config_.tlsPolicies.end() ? policy->second : config_.tlsPolicy;
    if (auto t = config_.transports.find(domain); t != config_.transports.end()) {
        r.mx = false;
        std::tie(r.target, r.port) = splitHostPort(t->second);
    } else if (!config_.relayhost.empty()) {
        r.mx = false;
        std::tie(r.target, r.port) = splitHostPort(config_.relayhost);
        r.policy = config_.relayhostTls;
        r.credentials = relayCredentials_ ? &*relayCredentials_ : nullptr;
    } else {
        r.target = domain;
        r.port = config_.smtpPort;
        r.mtaSts = policy == config_.tlsPolicies.end();  // an explicit delivery.tls_policy.<domain> wins
    }
    return r;
}

void DeliveryAgent::deliverRoute(const Route& route, const queue::QueueEnvelope& envelope, const MessageData& message,
                                 const std::vector<std::size_t>& indexes, std::vector<Outcome>& outcomes,
                                 ConnectionCache& connections) {
    StsVerdict sts;
    auto setAll = [&](Outcome::Kind kind, const SmtpReply& reply, const std::string& status) {
        for (auto i : indexes) {
            outcomes[i].kind = kind;
            outcomes[i].reply = reply;
            outcomes[i].status = status;
            outcomes[i].tlsPolicy = sts.enforce() ? "mta-sts" : policyName(route.policy);
        }
    };
    MxResult where = route.mx ? resolver_.resolveMx(route.target) : resolver_.resolveHost(route.target);
    if (where.status != LookupStatus::Ok) {
        setAll(where.status == LookupStatus::PermFail ? Outcome::Kind::Perm : Outcome::Kind::Temp,
               SmtpReply::local(where.error), where.enhanced);
        return;
    }
    // RFC 7672: the policy in force per host (TLSA lookups under dane/dane-only only), first:
    // where DANE applies to a host, MTA-STS is not applied to that host (RFC 8461 2). The
    // other hosts of the domain still get the domain's MTA-STS policy: one host with TLSA
    // records (or a TLSA lookup an attacker made fail) must not drop its enforce mode for
    // the rest, which would then get opportunistic TLS.
    std::map<std::string, HostTls> hostPolicies;
    std::set<std::string> daneHosts;  // the hosts DANE governs
    for (const auto& host : where.hosts) {
        HostTls t = hostTlsPolicy(resolver_, route.policy, where, host, route.port);
        // REQUIRETLS: a host DANE does not authenticate needs a PKIX-verified certificate.
        if (route.requireTls && t.usable && t.policy != TlsPolicy::Dane) {
            t.policy = TlsPolicy::Verify;
            t.label = tlsPolicyName(TlsPolicy::Verify);
        }
        if (daneGoverns(t)) daneHosts.insert(host.name);
        hostPolicies.emplace(host.name, std::move(t));
    }
    // RFC 8461: the recipient domain's MTA-STS policy, for MX routes only, unless DANE
    // governs every host.
    if (daneHosts.size() < hostPolicies.size() && route.mx && route.mtaSts && mtaSts_) {
        sts = applyMtaSts(*mtaSts_, route.target, where.hosts, envelope.id, *counters_, daneHosts);
        if (!sts.deferReason.empty()) {
            setAll(Outcome::Kind::Temp, SmtpReply::local("MTA-STS: " + sts.deferReason), "4.4.4");
            for (auto i : indexes) outcomes[i].mtaSts = "no matching MX";
            counters_->count("mta_sts_defer", "no_matching_mx");
            return;
        }
    }
    // RFC 8689 4.2.1: REQUIRETLS mail goes only to an MX whose name is authenticated: by a
    // DNSSEC-validated MX answer (queries carry the DO bit when some policy is dane), or by
    // an MTA-STS policy in enforce mode (the hosts were filtered to those it names). A next
    // hop the operator configured (transport, relayhost) needs neither.
    if (route.requireTls && route.mx && !where.mxSecure && !sts.enforce()) {
        setAll(Outcome::Kind::Perm,
               SmtpReply::local("REQUIRETLS: the MX of " + route.target +
                                " is not authenticated (no DNSSEC-validated answer, no MTA-STS policy in enforce mode)"),
               "5.7.30");
        return;
    }
    // The recipients still to do in this attempt: all of them at first; after a session,
    // those it failed temporarily (a 4xx, a lost connection), which the next address or MX
    // host gets in the same attempt (RFC 5321 5.1; Postfix falls back the same way).
    std::vector<std::size_t> pending = indexes;
    std::vector<std::string> recipients;
    OutboundDsn dsn;
    dsn.message = envelope.dsn;
    auto setPending = [&](std::vector<std::size_t> next) {
        pending = std::move(next);
        recipients.clear();
        dsn.recipients.clear();
        for (auto i : pending) {
            recipients.push_back(envelope.recipients[i]);
            dsn.recipients.push_back(envelope.dsnFor(envelope.recipients[i]));
        }
    };
    setPending(pending);
    bool sessionTried = false;  // a session gave `pending` their (temporary) outcomes
    int sessions = 0;           // transactions sent in this attempt (delivery.mx_session_limit)
    std::string fallbackFrom;   // logged when the next address is tried after a session's 4xx

    SmtpReply lastFailure = SmtpReply::local("no address to try");
    std::string lastRelay = "none";
    std::size_t tried = 0;  // addresses, at most delivery.mx_address_limit
    const auto addressLimit = static_cast<std::size_t>(config_.mxAddressLimit);
    // A next hop that answered but cannot meet the message's requirements (REQUIRETLS,
    // SMTPUTF8): the next one is tried; when every host failed that way, the message bounces.
    const bool needsUtf8 = envelopeNeedsSmtpUtf8(envelope.sender, recipients);
    std::string requirementStatus;
    bool otherFailure = false;
    std::string lastTlsPolicy = sts.enforce() ? "mta-sts" : policyName(route.policy);
    std::string lastDaneFailure;
    bool lastWasDane = false;    // the last failure is DANE's: deferred with 4.7.5
    bool stsTlsFailed = false;  // MTA-STS enforce: a host failed the verified-TLS requirement
    bool lastWasLoop = false;   // the last failure: a less preferred MX host that is this node
    // Every pending recipient fails with the last failure (kind and status given).
    auto failPending = [&](Outcome::Kind kind, const std::string& status) {
        for (auto i : pending) {
            outcomes[i].kind = kind;
            outcomes[i].reply = lastFailure;
            outcomes[i].status = status;
            outcomes[i].relay = lastRelay;
            outcomes[i].tlsPolicy = lastTlsPolicy;
            outcomes[i].daneFailure = lastDaneFailure;
        }
    };
    for (const auto& host : where.hosts) {
        if (tried >= addressLimit) break;
        HostTls hostTls = hostPolicies.at(host.name);
        const bool stsHost = !daneGoverns(hostTls);  // MTA-STS (if any) applies to this host
        if (sts.enforce() && stsHost) {  // a host the policy lists, with verified TLS
            hostTls.policy = TlsPolicy::Verify;
            hostTls.label = "mta-sts";
        }
        lastTlsPolicy = hostTls.label;
        if (!hostTls.usable) {
            logger().information(core::EventLine::inSession(envelope.id, "delivery.dane_skip")
                                     .add("host", host.name)
                                     .add("tls_policy", hostTls.label)
                                     .add("dane_fail", hostTls.failure)
                                     .str());
            lastFailure = SmtpReply::local("DANE: " + host.name + " is not usable (" + hostTls.failure + ")");
            lastRelay = host.name;
            lastDaneFailure = hostTls.failure;
            lastWasDane = true;
            otherFailure = true;
            continue;  // the next MX host; never clear text
        }
        const DaneTarget* dane = hostTls.dane ? &*hostTls.dane : nullptr;
        for (const auto& ip : host.addresses) {
            if (tried++ >= addressLimit) break;
            if (!fallbackFrom.empty()) {
                logger().information(core::EventLine::inSession(envelope.id, "delivery.next_host")
                                         .add("after", fallbackFrom)
                                         .add("host", host.name)
                                         .add("recipients", pending.size())
                                         .text("reply", lastFailure.text())
                                         .str());
                fallbackFrom.clear();
            }
            Poco::Net::SocketAddress address(ip, route.port);
            std::string key = address.toString() + "/" + host.name + "/" + route.key() + "/" + hostTls.label;
            SmtpClient* client = connections.find(key);
            if (!client) {
                // In the cache before connecting, so a shutdown can abort it mid-way.
                SmtpClient* fresh = connections.put(key, std::make_unique<SmtpClient>(clientSettings_));
                fresh->setLoopCheck(route.mx);
                // MTA-STS testing: try what enforce would require; on failure log it and go on as usual.
                const bool probe = sts.testing() && stsHost && hostTls.policy != TlsPolicy::Verify;
                SmtpReply r = fresh->open(address, host.name, probe ? TlsPolicy::Verify : hostTls.policy,
                                          route.credentials, true, dane);
                if (probe && !r.isPositive() && fresh->tlsRequirementFailed()) {
                    logger().information(core::EventLine::inSession(envelope.id, "mta_sts.testing_fail")
                                             .add("domain", route.target)
                                             .add("relay", fresh->relay())
                                             .text("reason", r.text())
                                             .str());
                    counters_->count("mta_sts_testing_fail", "tls");
                    r = fresh->open(address, host.name, hostTls.policy, route.credentials, true, dane);
                }
                // 'may': a failed handshake leaves the session unusable; try once more in clear.
                if (!r.isPositive() && fresh->tlsHandshakeFailed() && hostTls.policy == TlsPolicy::May)
                    r = fresh->open(address, host.name, hostTls.policy, route.credentials, false);
                if (!r.isPositive()) {
                    core::EventLine line = core::EventLine::inSession(envelope.id, "delivery.connect_fail");
                    line.add("relay", fresh->relay()).add("tls_policy", hostTls.label);
                    if (!fresh->daneFailure().empty()) line.add("dane_fail", fresh->daneFailure());
                    logger().information(line.text("reply", r.text()).str());
                    lastFailure = r;
                    lastRelay = fresh->relay();
                    lastDaneFailure = fresh->daneFailure();
                    lastWasDane = dane && !fresh->daneFailure().empty();
                    if (sts.enforce() && stsHost && fresh->tlsRequirementFailed()) stsTlsFailed = true;
                    if (fresh->loopsBack()) {
                        // The best MX is this node: the domain's mail comes here and cannot
                        // be delivered here, a permanent 5.4.6 at once (Postfix: "mail for
                        // X loops back to myself"). A less preferred MX that is: that host
                        // is skipped (4.4.6 if no other takes the message).
                        lastFailure = SmtpReply::local("mail for " + route.target + " loops back to myself");
                        lastRelay = fresh->relay();
                        connections.drop(key);
                        if (&host == &where.hosts.front()) {
                            failPending(Outcome::Kind::Perm, "5.4.6");
                            return;
                        }
                        lastWasLoop = true;
                        otherFailure = true;
                        continue;
                    }
                    lastWasLoop = false;
                    if (route.requireTls && fresh->tlsRequirementFailed()) {
                        requirementStatus = "5.7.30";
                        lastFailure = SmtpReply::local("REQUIRETLS: no verified TLS with " + fresh->relay() + ": " + r.text());
                    } else {
                        otherFailure = true;
                    }
                    connections.drop(key);
                    continue;  // RFC 5321 5.1: try the next address / MX host
                }
                client = fresh;
            }
            std::string status;
            std::string missing = missingExtension(*client, route.requireTls, needsUtf8, status);
            if (!missing.empty()) {
                logger().information(core::EventLine::inSession(envelope.id, "delivery.extension_missing")
                                         .add("relay", client->relay())
                                         .add("status", status)
                                         .text("reason", missing)
                                         .str());
                requirementStatus = status;
                lastFailure = SmtpReply::local(missing);
                lastRelay = client->relay();
                continue;  // another MX host may offer it
            }
            // Before the transaction: a session that breaks in it (a timeout) is closed, and a
            // closed client no longer says it was in TLS.
            const bool inTls = client->tlsActive();
            std::vector<SmtpReply> replies = client->send(envelope.sender, recipients, message, &dsn);
            std::vector<std::size_t> soft;
            for (std::size_t k = 0; k < pending.size(); ++k) {
                Outcome& o = outcomes[pending[k]];
                o.reply = replies[k];
                o.status = replies[k].status();
                o.relay = client->relay();
                o.remoteHost = host.name;
                o.tls = inTls;
                o.tlsPolicy = hostTls.label;
                o.dsnPassedOn = client->dsnOffered();
                o.kind = replies[k].isPositive() ? Outcome::Kind::Delivered
                       : replies[k].isPermanent() ? Outcome::Kind::Perm : Outcome::Kind::Temp;
                if (o.kind == Outcome::Kind::Temp) soft.push_back(pending[k]);
            }
            const std::string relay = client->relay();
            if (!client->usable()) connections.drop(key);  // destroys the client
            if (soft.empty() || ++sessions >= config_.mxSessionLimit) return;
            sessionTried = true;
            lastFailure = outcomes[soft.front()].reply;
            lastRelay = relay;
            fallbackFrom = relay;
            setPending(std::move(soft));
        }
    }
    // The recipients a session failed temporarily keep that session's answer when no other
    // host did better.
    if (sessionTried) return;
    // Every host that answered lacked what the message requires: a permanent failure
    // (RFC 8689 5.7.30, RFC 6531 3.4 5.6.7). A host that could not be reached keeps it temporary.
    if (!requirementStatus.empty() && !otherFailure) {
        failPending(Outcome::Kind::Perm, requirementStatus);
        return;
    }
    // No host took the connection: everything is a temporary failure (including a TLS
    // policy that could not be met: never fall back to clear text under encrypt/verify).
    failPending(Outcome::Kind::Temp, stsTlsFailed                 ? "4.7.5"
                                     : lastFailure.code >= 400 ? "4" + lastFailure.status().substr(1)
                                     : lastWasDane             ? "4.7.5"  // RFC 7672: cryptographic failure
                                     : lastWasLoop             ? "4.4.6"
                                                               : "4.4.1");
    if (stsTlsFailed) {
        for (auto i : pending) outcomes[i].mtaSts = "no verified TLS";
        counters_->count("mta_sts_defer", "no_verified_tls");
    }
}

void DeliveryAgent::rememberUnrecorded(const std::string& id, const std::set<std::string>& done, std::uint32_t attempts,
                                       std::chrono::system_clock::time_point notBefore, bool warned,
                                       const std::map<std::string, queue::OwedReport>& owed) {
    std::lock_guard lock(unrecordedMutex_);
    Unrecorded& u = unrecorded_[id];
    u.done.insert(done.begin(), done.end());
    for (const auto& [address, report] : owed) u.owed[address] = report;
    u.attempts = std::max(u.attempts, attempts);
    u.notBefore = std::max(u.notBefore, notBefore);
    u.warned = u.warned || warned;
    unrecordedCount_ = unrecorded_.size();
}

void DeliveryAgent::forgetUnrecorded(const std::string& id) {
    if (unrecordedCount_ == 0) return;
    std::lock_guard lock(unrecordedMutex_);
    unrecorded_.erase(id);
    unrecordedCount_ = unrecorded_.size();
}

std::optional<queue::QueueEnvelope> DeliveryAgent::applyUnrecorded(const std::string& id,
                                                                   queue::QueueEnvelope& envelope,
                                                                   std::set<std::string>& carried) {
    if (unrecordedCount_ == 0) return std::nullopt;
    Unrecorded u;
    {
        std::lock_guard lock(unrecordedMutex_);
        auto it = unrecorded_.find(id);
        if (it == unrecorded_.end()) return std::nullopt;
        u = it->second;
    }
    auto apply = [&u](queue::QueueEnvelope& e) {
        e.recipients.erase(std::remove_if(e.recipients.begin(), e.recipients.end(),
                                          [&](const std::string& r) { return u.done.count(r) > 0; }),
                           e.recipients.end());
        e.attempts = std::max(e.attempts, u.attempts);
        e.nextAttempt = std::max(e.nextAttempt, u.notBefore);
        e.warned = e.warned || u.warned;
        for (const auto& [address, report] : u.owed) e.owedReports[address] = report;
        return true;
    };
    apply(envelope);
    // Written now if the file system lets us (an empty recipient list removes the message).
    auto after = queue_.modifyEnvelope(id, apply);
    if (!after) carried = u.done;  // still in the file: the attempt's final write drops them
    if (after || ::access(queue_.envelopePath(id).c_str(), F_OK) != 0) {
        std::lock_guard lock(unrecordedMutex_);
        unrecorded_.erase(id);
        unrecordedCount_ = unrecorded_.size();
    }
    if (after) logger().notice(core::EventLine::inSession(id, "delivery.recorded").add("recipients", u.done.size()).str());
    if (envelope.recipients.empty() || std::chrono::system_clock::now() < envelope.nextAttempt) return envelope;
    return std::nullopt;
}

std::optional<queue::QueueEnvelope> DeliveryAgent::deliver(const std::string& id, ConnectionCache& connections) {
    std::optional<queue::QueueEnvelope> current = queue_.readEnvelope(id);
    if (!current) {
        forgetUnrecorded(id);  // deleted meanwhile (posternctl queue delete)
        return std::nullopt;
    }
    queue::QueueEnvelope envelope = *current;
    if (envelope.hold) return envelope;
    // An earlier attempt whose outcome could not be written: never the same recipient twice.
    std::set<std::string> carried;
    if (auto waiting = applyUnrecorded(id, envelope, carried)) {
        if (waiting->recipients.empty()) return std::nullopt;  // nothing left to send
        return waiting;                                        // not due yet
    }

    const std::uint32_t attempt = envelope.attempts + 1;
    MessageData message;
    message.path = queue_.dataPath(id);
    // Read once (up to InMemoryLimit); every pass below and the transaction use memory.
    bool readable = loadMessage(message.path, message.content, message.size);
    bool tlsNotRequired = false;
    if (readable && message.content) {
        const std::string& text = *message.content;
        message.eightBit = std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) > 127; });
        tlsNotRequired = !envelope.requireTls && headerSaysTlsNotRequired(text);
    } else if (readable) {
        message.eightBit = hasEightBit(message.path, readable);
        tlsNotRequired = !envelope.requireTls && fileSaysTlsNotRequired(message.path);
    }
    // A "relayed" report is made after the last recipient's record removed the file: for a
    // message not held in memory, what the report can carry is read now (the header section,
    // or for RET=FULL up to bounce_size_limit; one octet more tells it the message is longer).
    std::string reportHead;
    if (readable && !message.content &&
        std::any_of(envelope.recipients.begin(), envelope.recipients.end(),
                    [&](const std::string& r) { return envelope.dsnFor(r).wantsSuccess(); })) {
        bool cut = false;
        const std::size_t headLimit = std::max<std::size_t>(64 * 1024, static_cast<std::size_t>(config_.bounceSizeLimit)) + 1;
        queue::readFileHead(message.path, headLimit, reportHead, cut);
    }
    // A non-ASCII envelope needs SMTPUTF8 even without the flag (a bounce to a UTF-8 sender).
    message.smtpUtf8 = envelope.smtpUtf8 || envelopeNeedsSmtpUtf8(envelope.sender, envelope.recipients);
    message.requireTls = envelope.requireTls;

    std::vector<Outcome> outcomes(envelope.recipients.size());
    // Recipients that failed for good at an earlier attempt whose report could not be made:
    // never sent the message again (RFC 5321 4.2.1), only their report is retried.
    std::vector<bool> owed(envelope.recipients.size(), false);
    for (std::size_t i = 0; i < envelope.recipients.size(); ++i) {
        auto it = envelope.owedReports.find(envelope.recipients[i]);
        if (it == envelope.owedReports.end()) continue;
        owed[i] = true;
        Outcome& o = outcomes[i];  // its report is made from envelope.owedReports below
        o.kind = Outcome::Kind::Perm;
        o.status = it->second.status;
        o.reply.code = it->second.replyCode;
    }
    bool removed = false;  // the last delivered recipient took the message out of the queue
    if (!readable) {
        for (std::size_t i = 0; i < outcomes.size(); ++i) {
            if (owed[i]) continue;
            Outcome& o = outcomes[i];
            o.kind = Outcome::Kind::Temp;
            o.reply = SmtpReply::local("queue file " + message.path + " cannot be read");
            o.status = "4.3.0";
        }
        logger().error(core::EventLine::inSession(id, "delivery.data_missing").add("path", message.path).str());
    } else {
        // Group recipients by route, in envelope order; one transaction per route.
        std::map<std::string, std::pair<Route, std::vector<std::size_t>>> groups;
        std::vector<std::string> order;
        for (std::size_t i = 0; i < envelope.recipients.size(); ++i) {
            if (owed[i]) continue;
            Route r = routeFor(domainOf(envelope.recipients[i]));
            applyTlsRequirements(r, envelope.requireTls, tlsNotRequired);
            // A smarthost takes every domain in one transaction; MX routes are per domain.
            auto [it, inserted] = groups.try_emplace(r.key(), r, std::vector<std::size_t>{});
            if (inserted) order.push_back(r.key());
            it->second.second.push_back(i);
        }
        for (const auto& key : order) {
            const auto& [route, indexes] = groups[key];
            deliverRoute(route, envelope, message, indexes, outcomes, connections);
            // Record delivered recipients durably before anything else happens, so a crash
            // from here on never sends them the message again. (The window between the
            // remote 250 and this rename is unavoidable: RFC 1047.)
            std::set<std::string> done;
            for (auto i : indexes)
                if (outcomes[i].kind == Outcome::Kind::Delivered) done.insert(envelope.recipients[i]);
            if (!done.empty()) {
                auto after = queue_.modifyEnvelope(id, [&](queue::QueueEnvelope& e) {
                    e.recipients.erase(std::remove_if(e.recipients.begin(), e.recipients.end(),
                                                      [&](const std::string& r) { return done.count(r) > 0; }),
                                       e.recipients.end());
                    return true;
                });
                if (after && after->recipients.empty()) removed = true;
                if (!after && ::access(queue_.envelopePath(id).c_str(), F_OK) == 0) {
                    const int err = errno;
                    logger().error(core::EventLine::inSession(id, "delivery.record_fail")
                                       .text("error", queue::errnoText(err))
                                       .text("note", "kept in memory: not sent to them again by this process")
                                       .str());
                    rememberUnrecorded(id, done, 0, {}, false);
                }
            }
            for (auto i : indexes) {
                const Outcome& o = outcomes[i];
                if (o.kind != Outcome::Kind::Delivered) continue;
                if (tlsOutcomes_) tlsOutcomes_(o.tlsPolicy, "ok", "");
                logger().information(core::EventLine::inSession(id, "delivery.ok")
                                         .address("to", envelope.recipients[i])
                                         .add("relay", o.relay)
                                         .add("tls", (o.tls ? "yes" : "no"))
                                         .add("status", o.status)
                                         .text("reply", o.reply.text())
                                         .add("attempt", attempt)
                                         .add("delay",
                                              std::chrono::duration_cast<std::chrono::seconds>(
                                                  std::chrono::system_clock::now() - envelope.arrival)
                                                  .count(),
                                              "s")
                                         .add("tls_policy", o.tlsPolicy)
                                         .str());
            }
        }
    }

    const auto end = std::chrono::system_clock::now();
    const auto expiry = envelope.arrival + config_.maxLifetime;
    const bool expired = end >= expiry;
    const long delay = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(end - envelope.arrival).count());

    // Permanent failures, and temporary ones past the lifetime, are bounced.
    std::map<std::string, queue::OwedReport> owedNow;  // failed for good, report still to be made
    std::vector<DsnRecipient> failed;
    std::set<std::string> bounced;
    std::string lastError;
    std::vector<DsnRecipient> delayed;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        Outcome& o = outcomes[i];
        if (o.kind == Outcome::Kind::Delivered || o.kind == Outcome::Kind::Pending) continue;
        if (owed[i]) {  // the report as it was due at the earlier attempt
            const queue::OwedReport& r = envelope.owedReports.at(envelope.recipients[i]);
            failed.push_back(DsnRecipient{envelope.recipients[i], r.status, r.remoteHost, r.diagnostic,
                                          r.replyCode != 0, {}});
            bounced.insert(envelope.recipients[i]);
            continue;
        }
        DsnRecipient d{envelope.recipients[i], o.status, o.remoteHost, o.reply.text(), o.reply.code != 0, {}};
        if (o.kind == Outcome::Kind::Temp && expired) {
            d.status = "4.4.7";
            if (d.diagnostic.empty()) d.diagnostic = "delivery time expired";
            d.diagnosticIsSmtp = o.reply.code != 0;
            if (o.reply.code == 0) d.diagnostic = "delivery time expired: " + o.reply.text();
        }
        if (o.kind == Outcome::Kind::Perm || expired) {
            if (d.status.empty() || d.status[0] != '5') d.status = o.kind == Outcome::Kind::Perm ? "5.0.0" : d.status;
            failed.push_back(d);
            bounced.insert(envelope.recipients[i]);
        } else {
            lastError = o.reply.text();
            delayed.push_back(d);
        }
    }
    // RFC 3461 4.1: a failure report only for recipients whose NOTIFY has FAILURE (or
    // who gave no NOTIFY); the others are dropped from the queue all the same.
    std::vector<DsnRecipient> toReport;
    for (const auto& d : failed)
        if (envelope.dsnFor(d.address).wantsFailure()) toReport.push_back(d);
    if (toReport.size() < failed.size())
        logger().information(core::EventLine::inSession(id, "dsn.skip")
                                 .add("kind", "bounce")
                                 .add("reason", "notify")
                                 .add("recipients", failed.size() - toReport.size())
                                 .str());
    if (!toReport.empty()) {
        BounceSender::Result r = bounces_.send(envelope, message.path, DsnAction::Failed, toReport, expiry);
        if (report_ && !envelope.authUser.empty() && r == BounceSender::Result::Sent)
            report_->bounced(envelope.authUser, 1);
        if (r == BounceSender::Result::TempFail) {
            // Nobody was told yet: the report is owed. These recipients stay in the queue
            // marked as failed, and only their report is tried again (RFC 5321 4.2.1: a
            // request refused with 5yz is not repeated; Postfix does the same).
            logger().warning(
                core::EventLine::inSession(id, "dsn.defer").add("reason", "sink_or_directory_unavailable").str());
            for (const auto& d : toReport) {
                bounced.erase(d.address);
                int code = 0;
                for (std::size_t i = 0; i < outcomes.size(); ++i)
                    if (envelope.recipients[i] == d.address) code = d.diagnosticIsSmtp ? outcomes[i].reply.code : 0;
                owedNow[d.address] = queue::OwedReport{d.status, code, d.remoteMta, d.diagnostic};
            }
            if (lastError.empty()) lastError = toReport.front().diagnostic;
        }
    }
    // Compromised-account detection counts, per submitting account, the recipients a remote
    // server refused with a 5xx and the bounces generated (abuse/AccountSecurity). Only
    // refusals that are final now: one whose report could not be made yet is retried, and
    // counting it at every retry would flag an innocent account during an outage.
    if (report_ && !envelope.authUser.empty()) {
        std::size_t refused = 0;
        for (std::size_t i = 0; i < outcomes.size(); ++i)
            if (outcomes[i].kind == Outcome::Kind::Perm && outcomes[i].reply.code >= 500 &&
                bounced.count(envelope.recipients[i]) > 0)
                ++refused;
        report_->remoteRejected(envelope.authUser, refused);
    }
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        const Outcome& o = outcomes[i];
        if (o.kind == Outcome::Kind::Delivered || o.kind == Outcome::Kind::Pending) continue;
        // A report owed since an earlier attempt: its recipient's line was written then.
        if (owed[i]) continue;
        bool bounce = bounced.count(envelope.recipients[i]) > 0;
        const bool reportOwed = owedNow.count(envelope.recipients[i]) > 0;
        core::EventLine line =
            core::EventLine::inSession(id, (bounce || reportOwed ? "delivery.bounce" : "delivery.defer"));
        line.address("to", envelope.recipients[i]).add("relay", o.relay).add("tls", (o.tls ? "yes" : "no"));
        if (tlsOutcomes_) tlsOutcomes_(o.tlsPolicy.empty() ? "none" : o.tlsPolicy, "fail", o.daneFailure);
        line.add("status", (bounce && expired && o.kind == Outcome::Kind::Temp ? "4.4.7" : o.status))
            .text("reply", o.reply.text())
            .add("attempt", attempt)
            .add("delay", delay, "s");
        // Appended, so the fields before keep their places for log readers.
        line.add("tls_policy", o.tlsPolicy.empty() ? "none" : o.tlsPolicy);
        if (!o.daneFailure.empty()) line.add("dane_fail", o.daneFailure);
        if (!o.mtaSts.empty()) line.text("mta_sts", o.mtaSts);  // why MTA-STS deferred it
        if (reportOwed) line.add("dsn", "owed");
        logger().information(line.str());
    }

    // Delay warning (once), for recipients still waiting whose NOTIFY has DELAY (or who
    // gave no NOTIFY, RFC 3461 4.1).
    delayed.erase(std::remove_if(delayed.begin(), delayed.end(),
                                 [&](const DsnRecipient& d) { return !envelope.dsnFor(d.address).wantsDelay(); }),
                  delayed.end());
    bool warnNow = false;
    if (config_.delayWarning.count() > 0 && !envelope.warned && !delayed.empty() && !envelope.sender.empty() &&
        end >= envelope.arrival + config_.delayWarning) {
        warnNow = bounces_.send(envelope, message.path, DsnAction::Delayed, delayed, expiry) ==
                  BounceSender::Result::Sent;
    }

    // NOTIFY=SUCCESS to a next hop without DSN: we report "relayed" (RFC 3461 5.2.2);
    // a next hop with DSN got NOTIFY and reports itself.
    std::vector<DsnRecipient> relayed;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        const Outcome& o = outcomes[i];
        if (o.kind != Outcome::Kind::Delivered || o.dsnPassedOn) continue;
        if (!envelope.dsnFor(envelope.recipients[i]).wantsSuccess()) continue;
        relayed.push_back(DsnRecipient{envelope.recipients[i], o.status.empty() || o.status[0] != '2' ? "2.0.0" : o.status,
                                       o.remoteHost, o.reply.text(), o.reply.code != 0, {}});
    }
    if (!relayed.empty() &&
        bounces_.send(envelope, message.path, DsnAction::Relayed, relayed, expiry,
                      message.content ? message.content.get() : &reportHead) ==
            BounceSender::Result::TempFail)
        logger().error(core::EventLine::inSession(id, "dsn.fail")
                           .add("kind", "relayed")
                           .text("note", "the message is delivered; its success report is lost")
                           .str());

    // Every recipient delivered: the message left the queue with the last record above.
    if (removed) {
        forgetUnrecorded(id);
        logger().information(core::EventLine::inSession(id, "queue.done").str());
        return std::nullopt;
    }
    // One durable update: bounced recipients out (and delivered ones, in case their record
    // above failed), retry time and error in.
    std::set<std::string> finished = bounced;
    finished.insert(carried.begin(), carried.end());
    for (std::size_t i = 0; i < outcomes.size(); ++i)
        if (outcomes[i].kind == Outcome::Kind::Delivered) finished.insert(envelope.recipients[i]);
    const auto nextAttempt = nextAttemptTime(config_.retrySchedule, attempt, end, expiry);
    auto after = queue_.modifyEnvelope(id, [&](queue::QueueEnvelope& e) {
        e.recipients.erase(std::remove_if(e.recipients.begin(), e.recipients.end(),
                                          [&](const std::string& r) { return finished.count(r) > 0; }),
                           e.recipients.end());
        for (const auto& [address, report] : owedNow) e.owedReports[address] = report;
        e.attempts = attempt;
        e.nextAttempt = nextAttempt;
        e.lastError = lastError.substr(0, 500);
        for (auto& ch : e.lastError)
            if (ch == '\r' || ch == '\n' || ch == '\0') ch = ' ';
        if (warnNow) e.warned = true;
        return true;
    });
    if (!after) {
        if (::access(queue_.envelopePath(id).c_str(), F_OK) == 0) {
            const int err = errno;
            logger().error(core::EventLine::inSession(id, "delivery.update_fail")
                               .text("error", queue::errnoText(err))
                               .str());
            // The file still lists the finished recipients and the old retry time (due now):
            // both are kept in memory, so neither the next attempt nor a rescan sends to them
            // again or runs the message before its time (a warning already sent is not
            // remembered: at most one more).
            rememberUnrecorded(id, finished, attempt, nextAttempt, warnNow || envelope.warned, owedNow);
            auto stale = queue_.readEnvelope(id);
            if (stale) {
                stale->recipients.erase(std::remove_if(stale->recipients.begin(), stale->recipients.end(),
                                                       [&](const std::string& r) { return finished.count(r) > 0; }),
                                        stale->recipients.end());
                stale->nextAttempt = nextAttempt;
                stale->warned = stale->warned || warnNow;
                for (const auto& [address, report] : owedNow) stale->owedReports[address] = report;
                if (stale->recipients.empty()) return std::nullopt;
            }
            return stale;
        }
        forgetUnrecorded(id);
        logger().information(core::EventLine::inSession(id, "queue.done").str());
        return std::nullopt;
    }
    forgetUnrecorded(id);  // the file now says all of it
    // Recipients delivered in an attempt whose record failed, written now by this update
    // (the file system came back between this attempt's first write and its last): the same
    // line as when applyUnrecorded writes them.
    if (!carried.empty())
        logger().notice(core::EventLine::inSession(id, "delivery.recorded").add("recipients", carried.size()).str());
    if (after->recipients.empty()) {
        logger().information(core::EventLine::inSession(id, "queue.done").str());
        return std::nullopt;
    }
    return after;
}

}  // namespace postern::delivery
