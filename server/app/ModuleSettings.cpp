#include "app/ModuleSettings.h"

#include "abuse/AccountSecurityStateFile.h"

#include <Poco/Process.h>

#include <unistd.h>

namespace postern::app {

namespace {

using std::chrono::duration_cast;
using std::chrono::seconds;

std::uint32_t u32(long long v) { return static_cast<std::uint32_t>(v); }

abuse::RateLimits rateLimits(const config::RateLimitValues& v) {
    return abuse::RateLimits{u32(v.messagesPerHour), u32(v.recipientsPerHour), u32(v.messagesPerDay),
                             u32(v.recipientsPerDay)};
}

}  // namespace

bool tlsEnabled(const config::ServerConfig& cfg) { return cfg.tls.enabled(); }

net::TlsSettings tlsSettings(const config::ServerConfig& cfg) {
    net::TlsSettings s;
    s.certFile = cfg.tls.certFile;
    s.keyFile = cfg.tls.keyFile;
    s.ecdsaCertFile = cfg.tls.ecdsaCertFile;
    s.ecdsaKeyFile = cfg.tls.ecdsaKeyFile;
    s.minVersion = cfg.tls.minVersion;
    s.ciphers = cfg.tls.ciphers;
    s.ciphersuites = cfg.tls.ciphersuites;
    s.groups = cfg.tls.groups;
    s.sessionLifetime = duration_cast<seconds>(cfg.tls.sessionLifetime);
    s.sessionCacheSize = cfg.tls.sessionCacheSize;
    s.ticketKeyRotation = duration_cast<seconds>(cfg.tls.ticketKeyRotation);
    return s;
}

AuthSettings authSettings(const config::ServerConfig& cfg) {
    AuthSettings s;
    s.pluginDir = cfg.pluginDir.empty() ? std::string(POSTERN_PLUGIN_BUILD_DIR) : cfg.pluginDir;
    s.backends = cfg.backends;
    s.cache = {cfg.authCacheSize, cfg.authCacheTtl, cfg.authCacheNegativeTtl};
    s.appPasswordLastUsedInterval = cfg.appPasswordLastUsedInterval;
    s.maxParallelHashes = cfg.maxParallelHashes;
    s.hashWaitTimeout = cfg.hashWaitTimeout;
    // auth.default_scheme is validated at load against the same three names.
    s.rehash.target = auth::parseHashScheme(cfg.defaultScheme).value_or(auth::DefaultHashScheme);
    s.rehash.queueLimit = cfg.rehashQueue;
    s.rehashOnLogin = cfg.rehashOnLogin;
    for (const auto& b : cfg.backends) {
        // An LDAP directory is usually someone else's to write: off unless asked for.
        s.rehashBackends[b.name] = b.rehashOnLogin == "true" ||
                                   (b.rehashOnLogin == "auto" && cfg.rehashOnLogin && b.plugin != "ldap");
    }
    return s;
}

pg::ConnectSettings clusterConnect(const config::ServerConfig& cfg) {
    pg::ConnectSettings s;
    s.conninfo = cfg.cluster.conninfo;
    s.poolSize = static_cast<std::size_t>(cfg.cluster.poolSize);
    s.connectTimeout = cfg.cluster.connectTimeout;
    s.statementTimeout = cfg.cluster.statementTimeout;
    s.applicationName = "postern-cluster";
    return s;  // password: read from cluster.password_file by the builder
}

ClusterSettings clusterSettings(const config::ServerConfig& cfg) {
    ClusterSettings s;
    s.enabled = cfg.cluster.enabled();
    s.connect = clusterConnect(cfg);
    s.passwordFile = cfg.cluster.passwordFile;
    s.nodeId = cfg.cluster.nodeId.empty() ? cfg.hostname + "/" + std::to_string(Poco::Process::id())
                                          : cfg.cluster.nodeId;
    s.lockLease = cfg.cluster.lockLease;
    s.sweepInterval = cfg.cluster.sweepInterval;
    s.readConninfo = cfg.cluster.readConninfo;
    s.replicaMaxLag = cfg.cluster.replicaMaxLag;
    return s;
}

abuse::AuthPenaltySettings penaltySettings(const config::ServerConfig& cfg) {
    abuse::AuthPenaltySettings s;
    s.window = cfg.penalty.window;
    s.maxFailuresIp = u32(cfg.penalty.maxFailuresIp);
    s.maxFailuresAccount = u32(cfg.penalty.maxFailuresAccount);
    s.baseDelay = cfg.penalty.baseDelay;
    s.maxDelay = cfg.penalty.maxDelay;
    s.allowNetworks = cfg.penalty.allowNetworks;
    s.ipv6Prefix = static_cast<unsigned>(cfg.penalty.ipv6Prefix);
    s.parallelWait = cfg.penalty.parallelWait;
    s.knownAddressFailures = u32(cfg.penalty.knownAddressFailures);
    return s;
}

abuse::RateLimiterSettings rateLimiterSettings(const config::ServerConfig& cfg) {
    abuse::RateLimiterSettings s;
    s.user = rateLimits(cfg.limits.user);
    s.ip = rateLimits(cfg.limits.ip);
    s.allowNetworks = cfg.limits.allowNetworks;
    s.ipv6Prefix = static_cast<unsigned>(cfg.limits.ipv6Prefix);
    return s;
}

abuse::ConnectionGateSettings gateSettings(const config::ServerConfig& cfg) {
    abuse::ConnectionGateSettings s;
    const auto& c = cfg.connections;
    s.defaults = {u32(c.maxPerIp), u32(c.ratePerIp)};
    // A listener's own limit wins; 0 there means "the connections.* value".
    for (const auto& l : cfg.listeners)
        s.listeners[l.name] = {u32(l.maxConnectionsPerIp ? l.maxConnectionsPerIp : c.maxPerIp),
                               u32(l.connectionRatePerIp ? l.connectionRatePerIp : c.ratePerIp)};
    s.maxConcurrentTotal = u32(c.maxTotal);
    s.allowNetworks = c.allowNetworks;
    s.ipv6Prefix = static_cast<unsigned>(c.ipv6Prefix);
    return s;
}

GrantSettings grantSettings(const config::ServerConfig& cfg) {
    GrantSettings s;
    const auto& p = cfg.popBeforeSmtp;
    s.enabled = p.lifetime.count() > 0;
    s.lifetime = duration_cast<seconds>(p.lifetime);  // whole seconds (checked at load)
    s.ipv6Prefix = static_cast<unsigned>(p.ipv6Prefix);
    s.memorySweepInterval = std::chrono::minutes(1);
    s.pg.lifetime = s.lifetime;
    s.pg.ipv6PrefixLength = s.ipv6Prefix;
    s.pg.cacheTtl = cfg.cluster.grantCacheTtl;
    s.writeBehind.queueLimit = static_cast<std::size_t>(cfg.cluster.grantRetryQueue);
    s.writeBehind.retryMax = cfg.cluster.grantRetryBackoffMax;
    s.excludeNetworks = p.excludeNetworks;
    for (const auto& l : cfg.listeners)
        if (!l.proxyTrusted.empty()) s.balancerNetworks += (s.balancerNetworks.empty() ? "" : ", ") + l.proxyTrusted;
    return s;
}

StoreSettings storeSettings(const config::ServerConfig& cfg) {
    // Maildir names must be unique among every writer of a shared mail root: the nodes of a
    // cluster share server.hostname (one configuration file), so it is the node's own name:
    // cluster.node_id, else the machine's host name (a container's is its own).
    std::string writer = cfg.cluster.nodeId;
    if (writer.empty()) {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) == 0) writer = buf;
    }
    if (writer.empty()) writer = cfg.hostname;
    return {cfg.mailRoot, writer, duration_cast<seconds>(cfg.storeTmpCleanupAge), cfg.storeGroupCommit,
            cfg.storeQuotaCacheSize, cfg.storeDovecotUidlist};
}

QueueSettings queueSettings(const config::ServerConfig& cfg) {
    return {cfg.queueDir, queue::QueueLimits{cfg.queueMaxSize, cfg.queueMaxMessages}};
}

config::DeliveryConfig deliverySettings(const config::ServerConfig& cfg) { return cfg.delivery; }

HealthSettings healthSettings(const config::ServerConfig& cfg) {
    HealthSettings s;
    s.enabled = cfg.healthPort != 0;
    s.options.address = cfg.healthAddress;
    s.options.port = cfg.healthPort;
    s.options.requestTimeout = cfg.healthRequestTimeout;
    s.options.readyTimeout = cfg.healthReadyTimeout;  // the readiness check runs on a probe thread, bounded by this
    return s;
}

SessionTimeouts sessionTimeouts(const config::ServerConfig& cfg) {
    SessionTimeouts t;
    t.smtpCommand = cfg.smtp.commandTimeout;
    t.smtpData = cfg.smtp.dataTimeout;
    t.smtpMinDataRate = cfg.smtp.minDataRate;
    t.pop3Idle = cfg.pop3.idleTimeout;
    t.pop3DeadClient = cfg.pop3.deadClientTimeout;
    t.pop3Login = cfg.pop3.loginTimeout;
    t.refusal = cfg.connections.refusalTimeout;
    t.tlsRefusals = cfg.connections.tlsRefusals;
    t.proxyHeader = cfg.proxyTimeout;
    t.proxyDetectWait = cfg.proxyDetectWait;
    t.earlyTalkerWait = cfg.smtp.earlyTalkerWait;
    return t;
}

smtp::SmtpSettings smtpSettings(const config::ServerConfig& cfg, const config::ListenerConfig& l) {
    smtp::SmtpSettings s;
    s.hostname = cfg.hostname;
    s.role = l.role == config::SmtpRole::Submission ? smtp::Role::Submission : smtp::Role::Mx;
    s.tlsAvailable = cfg.tls.enabled() && l.tls == config::TlsMode::StartTls;
    s.allowPlaintextAuth = cfg.smtp.allowPlaintextAuth;
    s.maxMessageSize = cfg.smtp.maxMessageSize;
    s.maxRecipients = cfg.smtp.maxRecipients;
    s.maxCommandLength = cfg.smtp.maxCommandLength;
    s.maxLineLength = cfg.smtp.maxLineLength;
    s.maxHeaderSize = cfg.smtp.maxHeaderSize;
    s.maxErrors = cfg.smtp.maxErrors;
    s.maxHops = cfg.smtp.maxHops;
    s.maxJunkCommands = static_cast<std::size_t>(cfg.smtp.maxJunkCommands);
    s.maxRecipientOvershoot = static_cast<std::size_t>(cfg.smtp.maxRecipientOvershoot);
    s.addMissingHeaders = cfg.smtp.addMissingHeaders;
    s.quotaFullTempFail = cfg.smtp.quotaFullTempFail;
    s.grantOwnSendersOnly = cfg.popBeforeSmtp.ownSendersOnly;
    s.roles.postmaster = cfg.smtp.postmasterAddress;
    s.roles.abuse = cfg.smtp.abuseAddress;
    s.maxTransactions = cfg.smtp.maxTransactions;
    return s;
}

pop3::Pop3Settings pop3Settings(const config::ServerConfig& cfg, const config::ListenerConfig& l) {
    pop3::Pop3Settings s;
    s.allowPlaintextAuth = cfg.pop3.allowPlaintextAuth;
    s.tlsAvailable = cfg.tls.enabled() && l.tls == config::TlsMode::StartTls;
    s.greetingHost = cfg.hostname;
    s.grantLifetime = duration_cast<seconds>(cfg.popBeforeSmtp.lifetime);
    s.maxBadCommands = static_cast<std::size_t>(cfg.pop3.maxErrors);
    return s;
}

ListenerSettings listenerSettings(const config::ServerConfig& cfg, const config::ListenerConfig& l) {
    return {l, smtpSettings(cfg, l), pop3Settings(cfg, l), sessionTimeouts(cfg)};
}

ProcessSettings processSettings(const config::ServerConfig& cfg) {
    return {cfg.hostname, cfg.user, cfg.group, cfg.allowRoot, cfg.shutdownGrace, cfg.drainDelay, cfg.readyFile};
}

milter::MilterSettings milterSettings(const config::ServerConfig& cfg) {
    milter::MilterSettings s;
    const config::MilterConfig& m = cfg.milter;
    s.milters = m.milters;
    s.perListener = m.perListener;
    s.connectTimeout = m.connectTimeout;
    s.commandTimeout = m.commandTimeout;
    s.contentTimeout = m.contentTimeout;
    s.defaultAction = m.defaultAction == "accept"   ? milter::DefaultAction::Accept
                      : m.defaultAction == "reject" ? milter::DefaultAction::Reject
                                                    : milter::DefaultAction::TempFail;
    s.protocolVersion = static_cast<std::uint32_t>(m.protocol);
    return s;
}

abuse::AccountSecuritySettings accountSecuritySettings(const config::ServerConfig& cfg) {
    abuse::AccountSecuritySettings s;
    const auto& a = cfg.accountSecurity;
    s.enabled = a.enabled;
    s.flushInterval = a.flushInterval;
    s.stateWriteInterval = a.stateWriteInterval;
    s.window = a.window;
    s.maxIps = u32(a.maxIps);
    s.maxNetworks = u32(a.maxNetworks);
    s.maxRemoteRejected = u32(a.maxRemoteRejected);
    s.maxBounces = u32(a.maxBounces);
    s.loginLogMaxEntries = u32(a.loginLogMaxEntries);
    s.loginLogMaxAge = a.loginLogMaxAge;
    s.maxTrackedAccounts = static_cast<std::size_t>(a.maxTrackedAccounts);
    s.maxPending = static_cast<std::size_t>(a.maxPending);
    // A single node: posternctl user release drops a request file here (AccountSecurity
    // picks it up at its next flush). In a cluster the release goes through PostgreSQL.
    if (!cfg.cluster.enabled()) s.releaseDir = cfg.queueDir + "/account-release";
    // A single node keeps flags, counters and the login log in this file (a restart keeps holding).
    if (!cfg.cluster.enabled()) s.statePath = cfg.queueDir + "/" + abuse::AccountSecurityStateName;
    s.nodeId = clusterSettings(cfg).nodeId;
    return s;
}

DaemonSettings daemonSettings(const config::ServerConfig& cfg) {
    DaemonSettings s;
    s.tlsEnabled = tlsEnabled(cfg);
    s.tls = tlsSettings(cfg);
    s.auth = authSettings(cfg);
    s.cluster = clusterSettings(cfg);
    s.penalty = penaltySettings(cfg);
    s.limits = rateLimiterSettings(cfg);
    s.gate = gateSettings(cfg);
    s.grants = grantSettings(cfg);
    s.sessionGoodbye = cfg.connections.refusalTimeout;
    s.store = storeSettings(cfg);
    s.queue = queueSettings(cfg);
    s.delivery = deliverySettings(cfg);
    s.health = healthSettings(cfg);
    for (const auto& l : cfg.listeners) s.listeners.push_back(listenerSettings(cfg, l));
    s.process = processSettings(cfg);
    s.policy = cfg.policy;
    s.dkim = cfg.dkim;
    s.milter = milterSettings(cfg);
    s.accountSecurity = accountSecuritySettings(cfg);
    return s;
}

}  // namespace postern::app
