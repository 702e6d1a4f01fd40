// Immutable settings, parsed and validated once at start-up from the layered
// configuration (config file + command-line overrides) against ConfigSchema.
// Defaults live in the key table only: the members here value-initialise, load() sets them
// all. The daemon turns this into module settings in app/ModuleSettings, nowhere else.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace Poco::Util {
class AbstractConfiguration;
}

namespace postern::config {

using Millis = std::chrono::milliseconds;

enum class Protocol { Smtp, Pop3 };
enum class SmtpRole { Mx, Submission };
enum class TlsMode { None, StartTls, Implicit };

struct ListenerConfig {
    std::string name;
    std::string address;
    std::uint16_t port = 0;
    Protocol protocol = Protocol::Smtp;
    SmtpRole role = SmtpRole::Mx;
    TlsMode tls = TlsMode::None;
    // Defaults live in the key table (ConfigSchema.cpp) only; load() sets every field.
    int maxThreads = 0;
    int maxQueued = 0;
    Millis idleTime{};
    int backlog = 0;
    std::size_t stackSize = 0;
    int maxConnectionsPerIp = 0;   // 0 = connections.max_per_ip
    int connectionRatePerIp = 0;   // 0 = connections.rate_per_ip
    bool proxyProtocol = false;
    std::string proxyTrusted;      // network list text (validated at load)
    bool proxyTlsCounts = false;

    bool operator==(const ListenerConfig&) const = default;
};

struct ConnectionLimitsConfig {
    int maxTotal = 0;
    int maxPerIp = 0;
    int ratePerIp = 0;
    std::string allowNetworks;
    int ipv6Prefix = 0;
    Millis refusalTimeout{};  // TLS handshake + reading the refusal, for refused clients
    unsigned tlsRefusals = 0; // refused clients of an implicit-TLS listener told why at once
};

struct PenaltyConfig {
    Millis window{};
    int maxFailuresIp = 0;
    int maxFailuresAccount = 0;
    Millis baseDelay{};
    Millis maxDelay{};
    std::string allowNetworks;
    int ipv6Prefix = 0;
    Millis parallelWait{};
    int knownAddressFailures = 0;
};

// Compromised-account detection and the login log (account_security.*).
struct AccountSecurityConfig {
    bool enabled = false;
    Millis flushInterval{};
    Millis stateWriteInterval{};
    Millis window{};
    long long maxIps = 0;
    long long maxNetworks = 0;
    long long maxRemoteRejected = 0;
    long long maxBounces = 0;
    long long loginLogMaxEntries = 0;
    Millis loginLogMaxAge{};
    long long maxTrackedAccounts = 0;
    long long maxPending = 0;
    bool operator==(const AccountSecurityConfig&) const = default;
};

struct RateLimitValues {
    int messagesPerHour = 0;
    int recipientsPerHour = 0;
    int messagesPerDay = 0;
    int recipientsPerDay = 0;
};

struct LimitsConfig {
    RateLimitValues user;
    RateLimitValues ip;
    std::string allowNetworks;
    int ipv6Prefix = 0;
};

struct TlsConfig {
    std::string certFile;
    std::string keyFile;
    std::string ecdsaCertFile;
    std::string ecdsaKeyFile;
    std::string minVersion;
    std::string ciphers;
    std::string ciphersuites;
    std::string groups;
    Millis sessionLifetime{};
    std::size_t sessionCacheSize = 0;
    Millis ticketKeyRotation{};
    bool enabled() const { return !certFile.empty(); }
};

struct SmtpConfig {
    std::uint64_t maxMessageSize = 0;
    std::size_t maxRecipients = 0;
    std::size_t maxCommandLength = 0;
    std::size_t maxLineLength = 0;
    std::uint64_t maxHeaderSize = 0;
    std::size_t maxHops = 0;
    Millis commandTimeout{};
    Millis dataTimeout{};
    std::uint64_t minDataRate = 0;  // octets per second; 0 = off
    Millis earlyTalkerWait{};
    bool allowPlaintextAuth = false;
    int maxErrors = 0;
    std::int64_t maxJunkCommands = 0;
    std::int64_t maxRecipientOvershoot = 0;
    bool addMissingHeaders = false;
    bool quotaFullTempFail = false;
    std::string postmasterAddress;       // "" = <domain>/postmaster mailbox
    std::string abuseAddress;            // "" = off
    std::size_t maxTransactions = 0;     // per session; 0 = no limit
};

struct Pop3Config {
    bool allowPlaintextAuth = false;
    Millis idleTimeout{};
    Millis loginTimeout{};       // 0 = off
    Millis deadClientTimeout{};  // 0 = off
    int maxErrors = 0;
};

struct PopBeforeSmtpConfig {
    Millis lifetime{};
    int ipv6Prefix = 0;
    bool ownSendersOnly = false;
    std::string excludeNetworks;  // network list text (validated at load)
};

struct ClusterConfig {
    std::string conninfo;  // empty: single node
    std::string passwordFile;
    int poolSize = 0;
    Millis connectTimeout{};
    Millis statementTimeout{};
    std::string nodeId;
    Millis grantCacheTtl{};
    long long grantRetryQueue = 0;
    Millis grantRetryBackoffMax{};
    Millis lockLease{};
    Millis sweepInterval{};
    std::string readConninfo;  // cluster.read_conninfo: empty = every read on conninfo
    Millis replicaMaxLag{};    // cluster.replica_max_lag
    bool enabled() const { return !conninfo.empty(); }
};

struct BackendConfig {
    std::string name;                           // instance name
    std::string plugin;                         // postern-auth-<plugin>.so
    std::vector<std::string> domains;           // authoritative for ("*" = any)
    std::map<std::string, std::string> params;  // every other auth.backend.<name>.* key, prefix stripped
    std::string rehashOnLogin;                  // auth.backend.<name>.rehash_on_login: auto|true|false

    bool operator==(const BackendConfig&) const = default;
};

// Outbound delivery (server/delivery): delivery.* keys.
// Dane: RFC 7672 where the MX host has secure usable TLSA records, else as May;
// DaneOnly: secure usable TLSA records required, else the delivery is deferred.
enum class TlsPolicy { None, May, Encrypt, Verify, Dane, DaneOnly };

// Defaults live in the key table (ConfigSchema.cpp) only; load() sets every field.
// delivery.mta_sts*: MTA-STS for MX delivery (server/mtasts).
struct MtaStsConfig {
    bool enabled = false;
    Millis fetchTimeout{};
    std::uint64_t maxPolicySize = 0;
    std::string caFile;
    std::uint16_t httpsPort = 0;
    std::string cacheFile;  // "" = <server.queue_dir>/mta-sts.cache
    Millis fetchRetry{};
    Millis refreshInterval{};
    bool operator==(const MtaStsConfig&) const = default;
};

struct DeliveryConfig {
    bool enabled = false;
    int maxWorkers = 0;
    int maxPerDomain = 0;
    int mxSessionLimit = 0;                        // sessions (transactions) per route and attempt
    int mxAddressLimit = 0;                        // addresses tried per route and attempt
    std::vector<Millis> retrySchedule;             // never empty after load()
    Millis maxLifetime{};
    Millis delayWarning{};                         // 0 = off
    std::uint64_t bounceSizeLimit = 0;             // RET=FULL returns a message up to this size
    Millis scanInterval{};
    std::string dnsServer;                         // "ip:port"; empty = /etc/resolv.conf
    Millis dnsTimeout{};
    std::uint16_t smtpPort = 0;
    std::string relayhost;                         // "host:port"; empty = MX delivery
    TlsPolicy relayhostTls = TlsPolicy::None;
    std::string relayhostAuthFile;
    std::map<std::string, std::string> transports; // lower-case domain -> "host:port"
    TlsPolicy tlsPolicy = TlsPolicy::None;
    std::map<std::string, TlsPolicy> tlsPolicies;  // lower-case domain -> policy
    std::string tlsCaFile;
    Millis connectTimeout{};
    Millis greetingTimeout{};
    Millis mailTimeout{};
    Millis rcptTimeout{};
    Millis dataTimeout{};
    Millis dataBlockTimeout{};
    Millis dataDoneTimeout{};
    bool mimeOutputConversion = true;              // 8bit parts as quoted-printable without 8BITMIME
    Millis connectionCacheTimeLimit{};             // 0 = no pool (QUIT after each message)
    Millis connectionReuseTimeLimit{};
    MtaStsConfig mtaSts;

    bool operator==(const DeliveryConfig&) const = default;
};

// policy.*: the policy delegation client (server/policyd).
struct PolicyServiceConfig {
    // Defaults live in the key table (ConfigSchema.cpp) only; load() sets every field.
    std::string service;  // "" = off
    bool mx = false;      // policy.roles
    bool submission = false;
    Millis timeout{};
    std::string defaultAction;
    Millis maxIdle{};
    Millis maxTtl{};
    int requestLimit = 0;
    int tryLimit = 0;
    int poolSize = 0;
    bool operator==(const PolicyServiceConfig&) const = default;
};

// dkim.*: DKIM signing keys (server/dkim).
struct DkimConfig {
    std::string keyDir;           // "" = no key files
    bool keysInDatabase = false;  // keys from dkim_keys in the cluster database too
    bool operator==(const DkimConfig&) const = default;
};

// milter.*: the milter client (server/milter).
struct MilterConfig {
    // Defaults live in the key table (ConfigSchema.cpp) only; load() sets every field.
    std::vector<std::string> milters;                             // milter.smtpd_milters
    std::map<std::string, std::vector<std::string>> perListener;  // listener.<name>.milters, when set
    Millis connectTimeout{};
    Millis commandTimeout{};
    Millis contentTimeout{};
    std::string defaultAction;  // tempfail|accept|reject
    int protocol = 0;
    bool operator==(const MilterConfig&) const = default;
};

struct ServerConfig {
    std::string hostname;
    std::string mailRoot;
    std::string queueDir;
    std::string pluginDir;
    Millis shutdownGrace{};
    Millis drainDelay{};
    std::string readyFile;
    Millis proxyTimeout{};
    Millis proxyDetectWait{};
    std::string healthAddress;
    std::uint16_t healthPort = 0;
    Millis healthReadyTimeout{};
    Millis healthRequestTimeout{};
    ConnectionLimitsConfig connections;
    PenaltyConfig penalty;
    LimitsConfig limits;
    std::string user;
    std::string group;
    bool allowRoot = false;
    std::uint64_t queueMaxSize = 0;
    std::uint64_t queueMaxMessages = 0;
    Millis storeTmpCleanupAge{};  // store.tmp_cleanup_age
    std::size_t storeQuotaCacheSize = 0;  // store.quota_cache_size
    bool storeDovecotUidlist = false;     // store.dovecot_uidlist
    bool storeGroupCommit = true;  // store.group_commit
    TlsConfig tls;
    std::vector<ListenerConfig> listeners;
    SmtpConfig smtp;
    Pop3Config pop3;
    PopBeforeSmtpConfig popBeforeSmtp;
    ClusterConfig cluster;
    std::vector<BackendConfig> backends;
    std::string defaultScheme;
    bool rehashOnLogin = false;      // auth.rehash_on_login
    std::size_t rehashQueue = 0;     // auth.rehash_queue
    std::size_t authCacheSize = 0;
    Millis authCacheTtl{};
    Millis authCacheNegativeTtl{};
    Millis appPasswordLastUsedInterval{};  // auth.app_password_last_used_interval
    std::size_t maxParallelHashes = 0;     // auth.max_parallel_hashes (0 = no bound)
    Millis hashWaitTimeout{};              // auth.hash_wait_timeout
    DeliveryConfig delivery;
    PolicyServiceConfig policy;
    DkimConfig dkim;
    MilterConfig milter;
    AccountSecurityConfig accountSecurity;

    // Validates every key under our prefixes (unknown key -> error naming it) and
    // builds the struct. Throws std::runtime_error listing every problem found.
    static ServerConfig load(const Poco::Util::AbstractConfiguration& conf);
};

// Key prefixes that belong to POCO itself and are not ours to validate.
bool isForeignKey(const std::string& key);

// The address family a listener's address binds as (AF_INET for "localhost" and a.b.c.d,
// AF_INET6 for an IPv6 address, with or without its zone); 0 if it is none. The one parser
// behind both the listener clash check and the bind (Daemon::bindListeners).
int bindFamily(const std::string& address);

}  // namespace postern::config
