// The one place configuration turns into module settings: pure functions from the loaded
// config::ServerConfig (typed, validated once by ServerConfig::load against the key table)
// to the Settings struct each module takes. No other code in the daemon reads a config key
// or knows its default; the builders (Daemon.cpp) and connections get only these structs.
// tests/unit/app/ModuleSettingsTest.cpp walks the key table and checks that every key
// reaches at least one of them.
#pragma once

#include "milter/MilterChain.h"
#include "abuse/AccountSecurityStore.h"

#include "abuse/AuthPenalty.h"
#include "abuse/ConnectionGate.h"
#include "abuse/RateLimiter.h"
#include "auth/AuthCache.h"
#include "auth/Rehasher.h"
#include "config/ServerConfig.h"
#include "grants/PgGrantStore.h"
#include "grants/WriteBehindGrantStore.h"
#include "metrics/HealthServer.h"
#include "net/TlsContext.h"
#include "pg/ConnectSettings.h"
#include "pop3/Pop3Session.h"
#include "queue/OutboundQueue.h"
#include "smtp/SmtpSession.h"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace postern::app {

using Millis = std::chrono::milliseconds;

// Authentication: plugin directory, backend chain (auth.backends, auth.backend.*) and cache.
struct AuthSettings {
    std::string pluginDir;                      // server.plugin_dir (empty: the build tree's plugins/)
    std::vector<config::BackendConfig> backends;
    auth::AuthCacheSettings cache;              // auth.cache.*
    Millis appPasswordLastUsedInterval{};       // auth.app_password_last_used_interval
    std::size_t maxParallelHashes = 0;          // auth.max_parallel_hashes (0 = no bound)
    Millis hashWaitTimeout{};                   // auth.hash_wait_timeout
    // Rehash on login: target scheme (auth.default_scheme), queue (auth.rehash_queue), and
    // per backend instance whether it is on (auth.rehash_on_login and
    // auth.backend.<name>.rehash_on_login, auto = the global key, but off for ldap).
    auth::RehashSettings rehash;
    bool rehashOnLogin = false;                 // auth.rehash_on_login (the global default)
    std::map<std::string, bool> rehashBackends;
    bool operator==(const AuthSettings&) const = default;
};

// Cluster state in the shared PostgreSQL (cluster.*). connect.password stays empty here: the
// builder reads cluster.password_file itself (a file read, still privileged).
struct ClusterSettings {
    bool enabled = false;      // cluster.conninfo set
    pg::ConnectSettings connect;
    std::string passwordFile;  // cluster.password_file
    std::string nodeId;        // cluster.node_id, or server.hostname/pid
    Millis lockLease{};        // cluster.lock_lease
    Millis sweepInterval{};    // cluster.sweep_interval
    std::string readConninfo;  // cluster.read_conninfo ("" = no replica)
    Millis replicaMaxLag{};    // cluster.replica_max_lag
    bool operator==(const ClusterSettings&) const = default;
};

// POP-before-SMTP grant stores (pop_before_smtp.*, cluster.grant_*).
struct GrantSettings {
    bool enabled = false;                  // pop_before_smtp.lifetime > 0
    std::chrono::seconds lifetime{};       // pop_before_smtp.lifetime (memory store)
    unsigned ipv6Prefix = 0;               // pop_before_smtp.ipv6_prefix (memory store)
    Millis memorySweepInterval{};          // single node: expired grants are dropped this often
    grants::PgGrantSettings pg;            // cluster: PostgreSQL store
    grants::WriteBehindSettings writeBehind;
    // Addresses that never earn or relay on a grant: pop_before_smtp.exclude_networks (a
    // webmail server polling POP3 for its users would open the relay to everyone on it), and
    // every listener's proxy_trusted for connections without a PROXY header (a balancer's own
    // address is shared by all its clients).
    std::string excludeNetworks;
    std::string balancerNetworks;
    bool operator==(const GrantSettings&) const = default;
};

// Mailboxes (server.mail_root, store.*) and the outbound queue (server.queue_dir, queue.*).
struct StoreSettings {
    std::string mailRoot;
    std::string hostname;                 // this writer's name in Maildir and spool names:
                                          // cluster.node_id, else the machine's host name
    std::chrono::seconds tmpCleanupAge{};  // store.tmp_cleanup_age
    bool groupCommit = true;               // store.group_commit
    std::size_t quotaCacheSize = 0;        // store.quota_cache_size
    bool dovecotUidlist = false;           // store.dovecot_uidlist
    bool operator==(const StoreSettings&) const = default;
};
struct QueueSettings {
    std::string dir;
    queue::QueueLimits limits;
    bool operator==(const QueueSettings&) const = default;
};

// The health/metrics endpoint (health.*); off when health.port is 0.
struct HealthSettings {
    bool enabled = false;
    metrics::HealthServerOptions options;
    bool operator==(const HealthSettings&) const = default;
};

// The timeouts (and the refusal limit) a connection applies itself (around the protocol
// sessions).
struct SessionTimeouts {
    Millis smtpCommand{};      // smtp.command_timeout (also the implicit-TLS handshake)
    Millis smtpData{};         // smtp.data_timeout
    std::uint64_t smtpMinDataRate = 0;  // smtp.min_data_rate (octets/s; 0 = off)
    Millis pop3Idle{};         // pop3.idle_timeout
    Millis pop3DeadClient{};   // pop3.dead_client_timeout (0 = off)
    Millis pop3Login{};        // pop3.login_timeout (0 = off)
    Millis refusal{};          // connections.refusal_timeout
    unsigned tlsRefusals = 0;  // connections.tls_refusals: refusals told over TLS at once, per listener
    Millis proxyHeader{};      // server.proxy_timeout
    Millis proxyDetectWait{};  // server.proxy_detect_wait
    Millis earlyTalkerWait{};  // smtp.early_talker_wait (MX listeners)
    bool operator==(const SessionTimeouts&) const = default;
};

// One listener: its own keys (listener.<name>.*), and the session settings it hands to
// every connection.
struct ListenerSettings {
    config::ListenerConfig listener;
    smtp::SmtpSettings smtp;
    pop3::Pop3Settings pop3;
    SessionTimeouts timeouts;
    bool operator==(const ListenerSettings&) const = default;
};

// The process around the modules: identity, privilege drop, drain.
struct ProcessSettings {
    std::string hostname;    // server.hostname (log lines)
    std::string user;        // server.user
    std::string group;       // server.group
    bool allowRoot = false;  // server.allow_root
    Millis shutdownGrace{};  // server.shutdown_grace
    Millis drainDelay{};     // server.drain_delay
    std::string readyFile;   // server.ready_file
    bool operator==(const ProcessSettings&) const = default;
};

net::TlsSettings tlsSettings(const config::ServerConfig& cfg);
bool tlsEnabled(const config::ServerConfig& cfg);
AuthSettings authSettings(const config::ServerConfig& cfg);
pg::ConnectSettings clusterConnect(const config::ServerConfig& cfg);
ClusterSettings clusterSettings(const config::ServerConfig& cfg);
abuse::AuthPenaltySettings penaltySettings(const config::ServerConfig& cfg);
abuse::RateLimiterSettings rateLimiterSettings(const config::ServerConfig& cfg);
abuse::ConnectionGateSettings gateSettings(const config::ServerConfig& cfg);
GrantSettings grantSettings(const config::ServerConfig& cfg);
StoreSettings storeSettings(const config::ServerConfig& cfg);
QueueSettings queueSettings(const config::ServerConfig& cfg);
config::DeliveryConfig deliverySettings(const config::ServerConfig& cfg);
HealthSettings healthSettings(const config::ServerConfig& cfg);
SessionTimeouts sessionTimeouts(const config::ServerConfig& cfg);
smtp::SmtpSettings smtpSettings(const config::ServerConfig& cfg, const config::ListenerConfig& listener);
pop3::Pop3Settings pop3Settings(const config::ServerConfig& cfg, const config::ListenerConfig& listener);
ListenerSettings listenerSettings(const config::ServerConfig& cfg, const config::ListenerConfig& listener);
ProcessSettings processSettings(const config::ServerConfig& cfg);
abuse::AccountSecuritySettings accountSecuritySettings(const config::ServerConfig& cfg);

// Everything the daemon's modules take, built by the functions above.
struct DaemonSettings {
    bool tlsEnabled = false;
    net::TlsSettings tls;
    AuthSettings auth;
    ClusterSettings cluster;
    abuse::AuthPenaltySettings penalty;
    abuse::RateLimiterSettings limits;
    abuse::ConnectionGateSettings gate;
    GrantSettings grants;
    StoreSettings store;
    QueueSettings queue;
    config::DeliveryConfig delivery;
    HealthSettings health;
    std::vector<ListenerSettings> listeners;
    // connections.refusal_timeout: also how long a session cut at a deadline has to say why
    // before it is shut both ways (ConnectionRegistry::startDeadlines).
    Millis sessionGoodbye{};
    ProcessSettings process;
    config::DkimConfig dkim;              // dkim.*: signing keys (Daemon::buildDkim)
    abuse::AccountSecuritySettings accountSecurity;  // account_security.*
    config::PolicyServiceConfig policy;  // policy.*: turned into the delegation by policyd::PolicyDelegation::fromConfig
    milter::MilterSettings milter;       // milter.*, listener.*.milters
    bool operator==(const DaemonSettings&) const = default;
};

milter::MilterSettings milterSettings(const config::ServerConfig& cfg);
DaemonSettings daemonSettings(const config::ServerConfig& cfg);

}  // namespace postern::app
