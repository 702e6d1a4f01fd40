#include "config/ServerConfig.h"

#include "config/ConfigSchema.h"
#include "core/Duration.h"
#include "core/Network.h"
#include "core/Text.h"

#include <Poco/Environment.h>
#include <Poco/Net/IPAddress.h>

#include <arpa/inet.h>
#include <Poco/Util/AbstractConfiguration.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace postern::config {

namespace {

// An address to bind: an IPv4 or IPv6 address in text (inet_pton: POCO 1.11's tryParse
// refuses "::"; an IPv6 one may carry its zone, "fe80::1%eth0"), or "localhost" (from
// /etc/hosts, no DNS needed; configs written before this check used it).
struct BindAddress {
    int family = 0;
    bool mapped = false;  // IPv4-mapped (::ffff:a.b.c.d): refused by isBindAddress
    std::array<unsigned char, 16> bytes{};
    std::string zone;  // an IPv6 link-local address's interface ("fe80::1%eth0")
    bool wildcard() const {
        return std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b == 0; });
    }
    bool operator==(const BindAddress&) const = default;
};

std::optional<BindAddress> parseBindAddress(const std::string& text) {
    BindAddress a;
    const std::string v4 = text == "localhost" ? "127.0.0.1" : text;
    if (::inet_pton(AF_INET, v4.c_str(), a.bytes.data()) == 1) {
        a.family = AF_INET;
        return a;
    }
    const auto percent = text.find('%');
    const std::string v6 = text.substr(0, percent);
    if (::inet_pton(AF_INET6, v6.c_str(), a.bytes.data()) == 1) {
        static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        a.family = AF_INET6;
        a.mapped = std::equal(mapped, mapped + 12, a.bytes.begin());
        if (percent != std::string::npos) a.zone = text.substr(percent + 1);
        return a;
    }
    return std::nullopt;
}

// An IPv4-mapped address (::ffff:a.b.c.d) is refused: bound as IPv6 it takes the IPv4 port
// of a.b.c.d, and beside an IPv4 listener of its port (bound IPv6-only then) it cannot be
// bound at all; write a.b.c.d.
bool isBindAddress(const std::string& text) {
    const auto a = parseBindAddress(text);
    return a && !a->mapped;
}

// Collects every leaf key below `root` ("" = top level).
void collectKeys(const Poco::Util::AbstractConfiguration& conf, const std::string& root,
                 std::vector<std::string>& out) {
    Poco::Util::AbstractConfiguration::Keys keys;
    conf.keys(root, keys);
    for (const auto& k : keys) {
        std::string full = root.empty() ? k : root + "." + k;
        if (isForeignKey(full)) continue;
        Poco::Util::AbstractConfiguration::Keys sub;
        conf.keys(full, sub);
        if (conf.hasOption(full)) out.push_back(full);
        if (!sub.empty()) collectKeys(conf, full, out);
    }
}

class Reader {
public:
    explicit Reader(const Poco::Util::AbstractConfiguration& c) : conf_(c) {}

    std::string raw(const std::string& key, const std::string& pattern) {
        const KeyDef* def = findKey(pattern);
        if (!def) throw std::logic_error("undeclared key " + pattern);
        std::string v = conf_.getRawString(key, std::string(def->defaultValue));
        std::string err = validateValue(*def, v);
        if (!err.empty()) {
            errors_.push_back(key + ": " + err);
            bad_.insert(key);
        }
        // A choice is validated without its surrounding blanks, so it is used so too (a -D
        // value keeps them: "verify " must not become the fallback of a comparison).
        if (def->kind == ValueKind::Enum) return std::string(core::trimBlanks(v));
        return v;
    }
    std::string str(const std::string& key) { return raw(key, key); }
    bool boolean(const std::string& key, const std::string& pattern = "") {
        auto v = raw(key, pattern.empty() ? key : pattern);
        try { return parseBool(v); } catch (...) { return false; }
    }
    long long integer(const std::string& key, const std::string& pattern = "") {
        auto v = raw(key, pattern.empty() ? key : pattern);
        try { return std::stoll(v); } catch (...) { return 0; }
    }
    Millis duration(const std::string& key, const std::string& pattern = "") {
        auto v = raw(key, pattern.empty() ? key : pattern);
        try { return core::parseDuration(v); } catch (...) { return Millis(0); }
    }
    std::uint64_t size(const std::string& key) { return sizeAt(key, key); }
    std::uint64_t sizeAt(const std::string& key, const std::string& pattern) {
        auto v = raw(key, pattern);
        try { return parseSize(v); } catch (...) { return 0; }
    }
    // A network list key (allow-lists, proxy_trusted): the value, checked with the parser
    // its user applies later, so a bad entry fails start-up naming the key.
    std::string networks(const std::string& key, const std::string& pattern = "") {
        auto v = raw(key, pattern.empty() ? key : pattern);
        try {
            core::NetworkList::parse(v);
        } catch (const std::invalid_argument& e) {
            error(key + ": " + e.what());
        }
        return v;
    }
    // A timeout: 0 would reach SO_RCVTIMEO/SO_SNDTIMEO as "no timeout at all".
    Millis timeout(const std::string& key, const std::string& pattern = "") {
        Millis d = duration(key, pattern);
        if (d < Millis(1000)) error(key + ": must be at least 1s");
        return d;
    }
    // An IPv6 prefix length for address keys (0..128).
    int ipv6Prefix(const std::string& key) {
        auto n = integer(key);
        if (n < 0 || n > 128) error(key + ": must be 0..128");
        return static_cast<int>(n);
    }
    // A range check on a key whose value did not even parse adds nothing: every bad key is
    // reported once ("key: why"; the key is the text before the first ':' or ' ').
    void error(std::string e) {
        if (bad_.count(e.substr(0, e.find_first_of(": ")))) return;
        errors_.push_back(std::move(e));
    }
    const std::vector<std::string>& errors() const { return errors_; }

private:
    const Poco::Util::AbstractConfiguration& conf_;
    std::vector<std::string> errors_;
    std::set<std::string> bad_;  // keys whose value failed validateValue()
};

}  // namespace

int bindFamily(const std::string& address) {
    const auto a = parseBindAddress(address);
    return a ? a->family : 0;
}

bool isForeignKey(const std::string& key) {
    static const char* const foreign[] = {"application", "system", "logging", "config"};
    for (const char* p : foreign) {
        std::string prefix(p);
        if (key == prefix || key.rfind(prefix + ".", 0) == 0) return true;
    }
    return false;
}

ServerConfig ServerConfig::load(const Poco::Util::AbstractConfiguration& conf) {
    Reader r(conf);
    ServerConfig c;

    c.hostname = r.str("server.hostname");
    if (c.hostname.empty()) c.hostname = Poco::Environment::nodeName();
    c.mailRoot = r.str("server.mail_root");
    c.queueDir = r.str("server.queue_dir");
    c.pluginDir = r.str("server.plugin_dir");
    c.shutdownGrace = r.duration("server.shutdown_grace");
    c.drainDelay = r.duration("server.drain_delay");
    c.readyFile = r.str("server.ready_file");
    c.proxyTimeout = r.duration("server.proxy_timeout");
    c.proxyDetectWait = r.duration("server.proxy_detect_wait");
    c.healthAddress = r.str("health.address");
    {
        auto hp = r.integer("health.port");
        if (hp < 0 || hp > 65535) r.error("health.port: must be 0..65535");
        c.healthPort = static_cast<std::uint16_t>(hp);
        // An IP address, checked here: a host name was resolved only when binding, so --check
        // passed it and a boot before DNS was up failed with 78, which systemd does not retry.
        if (c.healthPort != 0 && !isBindAddress(c.healthAddress))
            r.error("health.address: '" + c.healthAddress +
                    "' is not an IPv4 or IPv6 address (an IPv4-mapped one: write its IPv4 address)");
    }
    c.healthReadyTimeout = r.duration("health.ready_timeout");
    c.healthRequestTimeout = r.duration("health.request_timeout");
    if (c.healthRequestTimeout.count() <= 0) r.error("health.request_timeout: must be more than 0");
    if (c.healthReadyTimeout.count() <= 0) r.error("health.ready_timeout: must be more than 0");
    c.connections.maxTotal = static_cast<int>(r.integer("connections.max_total"));
    c.connections.maxPerIp = static_cast<int>(r.integer("connections.max_per_ip"));
    c.connections.ratePerIp = static_cast<int>(r.integer("connections.rate_per_ip"));
    c.connections.allowNetworks = r.networks("connections.allow_networks");
    c.connections.refusalTimeout = r.duration("connections.refusal_timeout");
    c.connections.tlsRefusals = static_cast<unsigned>(r.integer("connections.tls_refusals"));
    if (r.integer("connections.tls_refusals") < 0) r.error("connections.tls_refusals: must be 0 or more");
    c.connections.ipv6Prefix = r.ipv6Prefix("connections.ipv6_prefix");
    c.penalty.window = r.duration("auth.penalty.window");
    c.penalty.maxFailuresIp = static_cast<int>(r.integer("auth.penalty.max_failures_ip"));
    c.penalty.maxFailuresAccount = static_cast<int>(r.integer("auth.penalty.max_failures_account"));
    c.penalty.baseDelay = r.duration("auth.penalty.base_delay");
    c.penalty.maxDelay = r.duration("auth.penalty.max_delay");
    c.penalty.allowNetworks = r.networks("auth.penalty.allow_networks");
    c.penalty.ipv6Prefix = r.ipv6Prefix("auth.penalty.ipv6_prefix");
    c.penalty.parallelWait = r.duration("auth.penalty.parallel_wait");
    if (c.penalty.parallelWait <= Millis(0)) r.error("auth.penalty.parallel_wait: must be more than 0");
    c.penalty.knownAddressFailures = static_cast<int>(r.integer("auth.penalty.known_address_failures"));
    if (r.integer("auth.penalty.known_address_failures") < 0)
        r.error("auth.penalty.known_address_failures: must be 0 or more");
    if (c.penalty.window <= Millis(0)) r.error("auth.penalty.window: must be more than 0");
    if (c.penalty.maxDelay < c.penalty.baseDelay) r.error("auth.penalty.max_delay: must be at least auth.penalty.base_delay");
    auto rates = [&](const std::string& who, RateLimitValues& v) {
        v.messagesPerHour = static_cast<int>(r.integer("limits." + who + ".messages_per_hour"));
        v.recipientsPerHour = static_cast<int>(r.integer("limits." + who + ".recipients_per_hour"));
        v.messagesPerDay = static_cast<int>(r.integer("limits." + who + ".messages_per_day"));
        v.recipientsPerDay = static_cast<int>(r.integer("limits." + who + ".recipients_per_day"));
    };
    rates("user", c.limits.user);
    rates("ip", c.limits.ip);
    c.limits.allowNetworks = r.networks("limits.allow_networks");
    c.limits.ipv6Prefix = r.ipv6Prefix("limits.ipv6_prefix");
    c.user = r.str("server.user");
    c.group = r.str("server.group");
    c.allowRoot = r.boolean("server.allow_root");

    c.queueMaxSize = r.size("queue.max_size");
    c.queueMaxMessages = static_cast<std::uint64_t>(r.integer("queue.max_messages"));
    c.storeTmpCleanupAge = r.duration("store.tmp_cleanup_age");
    c.storeQuotaCacheSize = static_cast<std::size_t>(r.integer("store.quota_cache_size"));
    c.storeDovecotUidlist = r.boolean("store.dovecot_uidlist");
    c.storeGroupCommit = r.boolean("store.group_commit");

    c.tls.certFile = r.str("tls.cert_file");
    c.tls.keyFile = r.str("tls.key_file");
    c.tls.ecdsaCertFile = r.str("tls.ecdsa_cert_file");
    c.tls.ecdsaKeyFile = r.str("tls.ecdsa_key_file");
    c.tls.minVersion = r.str("tls.min_version");
    c.tls.ciphers = r.str("tls.ciphers");
    c.tls.ciphersuites = r.str("tls.ciphersuites");
    c.tls.groups = r.str("tls.groups");
    c.tls.sessionLifetime = r.duration("tls.session_lifetime");
    c.tls.sessionCacheSize = static_cast<std::size_t>(r.integer("tls.session_cache_size"));
    c.tls.ticketKeyRotation = r.duration("tls.ticket_key_rotation");
    if (c.tls.sessionLifetime < std::chrono::seconds(1) || c.tls.sessionLifetime > std::chrono::hours(24))
        r.error("tls.session_lifetime must be between 1s and 24h (forward secrecy: resumable secrets are kept that long)");
    // A ticket must stay decryptable for its whole lifetime; a key decrypts for up to two
    // rotation periods after it was made but is used for new tickets only during the first.
    if (c.tls.ticketKeyRotation.count() != 0 && c.tls.ticketKeyRotation < c.tls.sessionLifetime)
        r.error("tls.ticket_key_rotation must be 0 or at least tls.session_lifetime");
    // A ticket key decrypts every session made under it for two periods: forward secrecy
    // as for the session lifetime (a stolen key must not open weeks of recorded sessions).
    if (c.tls.ticketKeyRotation > std::chrono::hours(24))
        r.error("tls.ticket_key_rotation must be at most 24h (forward secrecy: a key decrypts the sessions of two periods)");
    if (c.tls.certFile.empty() != c.tls.keyFile.empty())
        r.error("tls.cert_file and tls.key_file must be set together");
    if (c.tls.ecdsaCertFile.empty() != c.tls.ecdsaKeyFile.empty())
        r.error("tls.ecdsa_cert_file and tls.ecdsa_key_file must be set together");
    if (!c.tls.ecdsaCertFile.empty() && c.tls.certFile.empty())
        r.error("tls.ecdsa_cert_file needs tls.cert_file (the ECDSA chain stands beside the main one)");

    std::set<std::string> listenerNames;
    for (const auto& name : parseList(r.str("listeners"))) {
        if (!listenerNames.insert(name).second) r.error("listeners: '" + name + "' named twice");
        ListenerConfig l;
        l.name = name;
        std::string p = "listener." + name + ".";
        auto pat = [](const char* leaf) { return std::string("listener.*.") + leaf; };
        l.address = r.raw(p + "address", pat("address"));
        if (!isBindAddress(l.address))
            r.error(p + "address: '" + l.address +
                    "' is not an IPv4 or IPv6 address (an IPv4-mapped one: write its IPv4 address)");
        auto port = r.integer(p + "port", pat("port"));
        if (port <= 0 || port > 65535) r.error(p + "port: must be 1..65535");
        l.port = static_cast<std::uint16_t>(port);
        l.protocol = r.raw(p + "protocol", pat("protocol")) == "pop3" ? Protocol::Pop3 : Protocol::Smtp;
        l.role = r.raw(p + "role", pat("role")) == "submission" ? SmtpRole::Submission : SmtpRole::Mx;
        auto tls = r.raw(p + "tls", pat("tls"));
        l.tls = tls == "implicit" ? TlsMode::Implicit : tls == "starttls" ? TlsMode::StartTls : TlsMode::None;
        l.maxThreads = static_cast<int>(r.integer(p + "max_threads", pat("max_threads")));
        l.maxQueued = static_cast<int>(r.integer(p + "max_queued", pat("max_queued")));
        l.idleTime = r.duration(p + "idle_time", pat("idle_time"));
        l.backlog = static_cast<int>(r.integer(p + "backlog", pat("backlog")));
        if (l.backlog < 1 || l.backlog > 65535) r.error(p + "backlog: must be 1..65535");
        l.stackSize = static_cast<std::size_t>(r.sizeAt(p + "stack_size", pat("stack_size")));
        l.maxConnectionsPerIp = static_cast<int>(r.integer(p + "max_connections_per_ip", pat("max_connections_per_ip")));
        l.connectionRatePerIp = static_cast<int>(r.integer(p + "connection_rate_per_ip", pat("connection_rate_per_ip")));
        l.proxyProtocol = r.boolean(p + "proxy_protocol", pat("proxy_protocol"));
        l.proxyTrusted = r.networks(p + "proxy_trusted", pat("proxy_trusted"));
        l.proxyTlsCounts = r.boolean(p + "proxy_tls_counts", pat("proxy_tls_counts"));
        if (l.proxyProtocol && parseList(l.proxyTrusted).empty())
            r.error(p + "proxy_trusted: proxy_protocol is on but no balancer network is trusted (an empty list trusts nobody)");
        if (l.stackSize != 0 && l.stackSize < 64 * 1024) r.error(p + "stack_size: at least 64K");
        if (l.maxThreads < 1) r.error(p + "max_threads: must be at least 1");
        if (l.maxQueued < 1) r.error(p + "max_queued: must be at least 1 (0 would drop every connection)");
        if (l.tls != TlsMode::None && !c.tls.enabled())
            r.error(p + "tls: '" + tls + "' needs tls.cert_file and tls.key_file");
        c.listeners.push_back(l);
    }
    if (c.listeners.empty()) r.error("listeners: no listener configured");
    // Two listeners that would take the same port: a configuration error (exit 78), found
    // here and by --check, not at bind time, where a port in use is taken for a process on
    // its way out (exit 75, restarted). A wildcard collides with a specific address of its
    // family; "::" beside IPv4 listeners is bound IPv6-only (Daemon::bindListeners).
    for (std::size_t i = 0; i < c.listeners.size(); ++i) {
        for (std::size_t j = i + 1; j < c.listeners.size(); ++j) {
            const ListenerConfig& a = c.listeners[i];
            const ListenerConfig& b = c.listeners[j];
            if (a.port != b.port) continue;
            // Parsed as bind() takes them (both are valid bind addresses by now): "::" and
            // "localhost" too, which POCO 1.11's tryParse refuses or does not resolve.
            const auto ia = parseBindAddress(a.address);
            const auto ib = parseBindAddress(b.address);
            const bool clash = ia && ib ? ia->family == ib->family && (*ia == *ib || ia->wildcard() || ib->wildcard())
                                        : a.address == b.address;
            if (clash)
                r.error("listener." + a.name + " and listener." + b.name + " both listen on port " +
                        std::to_string(a.port) + " of " + a.address + (a.address == b.address ? "" : " / " + b.address));
        }
    }

    c.smtp.maxMessageSize = r.size("smtp.max_message_size");
    const std::int64_t maxRecipients = r.integer("smtp.max_recipients");
    c.smtp.maxRecipients = maxRecipients < 1 ? 0 : static_cast<std::size_t>(maxRecipients);
    c.smtp.maxCommandLength = static_cast<std::size_t>(r.integer("smtp.max_command_length"));
    c.smtp.maxLineLength = static_cast<std::size_t>(r.integer("smtp.max_line_length"));
    c.smtp.maxHeaderSize = r.size("smtp.max_header_size");
    const std::int64_t maxHops = r.integer("smtp.max_hops");
    if (maxHops < 1) r.error("smtp.max_hops: must be at least 1");
    c.smtp.maxHops = static_cast<std::size_t>(std::max<std::int64_t>(maxHops, 1));
    c.smtp.commandTimeout = r.timeout("smtp.command_timeout");
    c.smtp.earlyTalkerWait = r.duration("smtp.early_talker_wait");
    c.smtp.dataTimeout = r.timeout("smtp.data_timeout");
    const std::int64_t minDataRate = r.integer("smtp.min_data_rate");
    if (minDataRate < 0) r.error("smtp.min_data_rate: must be 0 (off) or more");
    c.smtp.minDataRate = static_cast<std::uint64_t>(std::max<std::int64_t>(minDataRate, 0));
    c.smtp.allowPlaintextAuth = r.boolean("smtp.allow_plaintext_auth");
    c.smtp.maxErrors = static_cast<int>(r.integer("smtp.max_errors"));
    c.smtp.maxJunkCommands = r.integer("smtp.max_junk_commands");
    if (c.smtp.maxJunkCommands < 0) r.error("smtp.max_junk_commands: must be 0 (no limit) or more");
    c.smtp.maxRecipientOvershoot = r.integer("smtp.max_recipient_overshoot");
    if (c.smtp.maxRecipientOvershoot < 0) r.error("smtp.max_recipient_overshoot: must be 0 or more");
    c.smtp.addMissingHeaders = r.boolean("smtp.add_missing_headers");
    c.smtp.quotaFullTempFail = r.boolean("smtp.quota_full_tempfail");
    if (c.smtp.maxCommandLength < 512) r.error("smtp.max_command_length: RFC 5321 requires at least 512");
    if (c.smtp.maxLineLength < 1000) r.error("smtp.max_line_length: RFC 5321 requires at least 1000");
    // Postfix reads 0 as "no limit" for some of these; here a 0 would refuse every message
    // (and advertise SIZE 0, which RFC 1870 reads as "no limit"), every recipient, or end a
    // session at its first error.
    if (c.smtp.maxMessageSize == 0) r.error("smtp.max_message_size: must be more than 0 (there is no unlimited size)");
    if (c.smtp.maxRecipients == 0) r.error("smtp.max_recipients: must be at least 1");
    if (c.smtp.maxErrors < 1) r.error("smtp.max_errors: must be at least 1");
    if (c.smtp.maxHeaderSize == 0) r.error("smtp.max_header_size: must be more than 0");
    // --- postmaster and abuse addresses
    c.smtp.postmasterAddress = r.str("smtp.postmaster_address");
    c.smtp.abuseAddress = r.str("smtp.abuse_address");
    c.smtp.maxTransactions = static_cast<std::size_t>(r.integer("smtp.max_transactions_per_session"));
    for (const char* key : {"smtp.postmaster_address", "smtp.abuse_address"}) {
        const std::string& a = std::string(key) == "smtp.abuse_address" ? c.smtp.abuseAddress : c.smtp.postmasterAddress;
        const auto at = a.rfind('@');
        if (!a.empty() && (at == std::string::npos || at == 0 || at + 1 == a.size() ||
                           a.find_first_of(" \t<>,") != std::string::npos))
            r.error(std::string(key) + ": '" + a + "' is not an address local@domain");
    }

    c.pop3.allowPlaintextAuth = r.boolean("pop3.allow_plaintext_auth");
    c.pop3.idleTimeout = r.timeout("pop3.idle_timeout");
    c.pop3.loginTimeout = r.duration("pop3.login_timeout");
    if (c.pop3.loginTimeout.count() != 0 && c.pop3.loginTimeout < std::chrono::seconds(1))
        r.error("pop3.login_timeout: must be 0 (off) or at least 1s");
    c.pop3.deadClientTimeout = r.duration("pop3.dead_client_timeout");
    if (c.pop3.deadClientTimeout.count() != 0 && c.pop3.deadClientTimeout < std::chrono::seconds(2))
        r.error("pop3.dead_client_timeout: must be 0 (off) or at least 2s");
    c.pop3.maxErrors = static_cast<int>(r.integer("pop3.max_errors"));

    c.popBeforeSmtp.lifetime = r.duration("pop_before_smtp.lifetime");
    // The grant stores count whole seconds (PostgreSQL: "expires = now() + N seconds").
    if (c.popBeforeSmtp.lifetime.count() % 1000 != 0)
        r.error("pop_before_smtp.lifetime: must be 0 (off) or a whole number of seconds, e.g. 600s");
    c.popBeforeSmtp.ipv6Prefix = static_cast<int>(r.integer("pop_before_smtp.ipv6_prefix"));
    c.popBeforeSmtp.ownSendersOnly = r.boolean("pop_before_smtp.own_senders_only");
    c.popBeforeSmtp.excludeNetworks = r.networks("pop_before_smtp.exclude_networks");
    c.cluster.conninfo = r.str("cluster.conninfo");
    c.cluster.passwordFile = r.str("cluster.password_file");
    c.cluster.poolSize = static_cast<int>(r.integer("cluster.pool_size"));
    c.cluster.connectTimeout = r.duration("cluster.connect_timeout");
    c.cluster.statementTimeout = r.duration("cluster.statement_timeout");
    c.cluster.nodeId = r.str("cluster.node_id");
    c.cluster.grantCacheTtl = r.duration("cluster.grant_cache_ttl");
    c.cluster.grantRetryQueue = r.integer("cluster.grant_retry_queue");
    c.cluster.grantRetryBackoffMax = r.duration("cluster.grant_retry_backoff_max");
    c.cluster.lockLease = r.duration("cluster.lock_lease");
    c.cluster.sweepInterval = r.duration("cluster.sweep_interval");
    c.cluster.readConninfo = r.str("cluster.read_conninfo");
    c.cluster.replicaMaxLag = r.duration("cluster.replica_max_lag");
    if (c.cluster.poolSize < 1 || c.cluster.poolSize > 1000) r.error("cluster.pool_size: must be 1..1000");
    if (c.cluster.connectTimeout <= Millis(0)) r.error("cluster.connect_timeout: must be more than 0 (an outage must fail fast)");
    if (c.cluster.statementTimeout <= Millis(0))
        r.error("cluster.statement_timeout: must be more than 0 (a frozen database must not hang sessions)");
    if (c.cluster.lockLease < Millis(3000)) r.error("cluster.lock_lease: at least 3s");
    if (c.cluster.sweepInterval < Millis(1000)) r.error("cluster.sweep_interval: at least 1s");
    if (c.cluster.grantRetryQueue < 0) r.error("cluster.grant_retry_queue: must not be negative");
    if (c.cluster.grantRetryBackoffMax < Millis(1000)) r.error("cluster.grant_retry_backoff_max: at least 1s");
    if (c.popBeforeSmtp.ipv6Prefix < 1 || c.popBeforeSmtp.ipv6Prefix > 128)
        r.error("pop_before_smtp.ipv6_prefix: must be 1..128");

    c.defaultScheme = r.str("auth.default_scheme");
    c.rehashOnLogin = r.boolean("auth.rehash_on_login");
    c.rehashQueue = static_cast<std::size_t>(r.integer("auth.rehash_queue"));
    c.authCacheSize = static_cast<std::size_t>(r.integer("auth.cache.size"));
    c.authCacheTtl = r.duration("auth.cache.ttl");
    c.authCacheNegativeTtl = r.duration("auth.cache.negative_ttl");
    c.appPasswordLastUsedInterval = r.duration("auth.app_password_last_used_interval");
    c.maxParallelHashes = static_cast<std::size_t>(r.integer("auth.max_parallel_hashes"));
    c.hashWaitTimeout = r.duration("auth.hash_wait_timeout");
    std::set<std::string> backendNames;
    for (const auto& name : parseList(r.str("auth.backends"))) {
        if (!backendNames.insert(name).second) r.error("auth.backends: '" + name + "' named twice");
        BackendConfig b;
        b.name = name;
        std::string p = "auth.backend." + name;
        b.plugin = r.raw(p + ".plugin", "auth.backend.*.plugin");
        b.domains = parseList(r.raw(p + ".domains", "auth.backend.*.domains"));
        b.rehashOnLogin = r.raw(p + ".rehash_on_login", "auth.backend.*.rehash_on_login");
        Poco::Util::AbstractConfiguration::Keys keys;
        conf.keys(p, keys);
        for (const auto& k : keys)
            if (k != "plugin" && k != "domains" && k != "rehash_on_login") b.params[k] = conf.getRawString(p + "." + k, "");
        c.backends.push_back(b);
    }
    if (c.backends.empty()) r.error("auth.backends: no backend configured");

    // --- policy delegation ---------------------------------------------------------
    {
        PolicyServiceConfig& p = c.policy;
        p.service = r.str("policy.service");
        if (!p.service.empty() && p.service.rfind("inet:", 0) != 0 && p.service.rfind("unix:", 0) != 0)
            r.error("policy.service: expected inet:host:port or unix:/path, got '" + p.service + "'");
        p.mx = p.submission = false;
        for (const auto& role : parseList(r.str("policy.roles"))) {
            if (role == "mx") p.mx = true;
            else if (role == "submission") p.submission = true;
            else r.error("policy.roles: '" + role + "' is not a role (mx, submission)");
        }
        p.timeout = r.duration("policy.timeout");
        if (p.timeout < Millis(100)) r.error("policy.timeout: at least 100ms");
        p.defaultAction = r.str("policy.default_action");
        p.maxIdle = r.duration("policy.max_idle");
        p.maxTtl = r.duration("policy.max_ttl");
        p.requestLimit = static_cast<int>(r.integer("policy.request_limit"));
        p.tryLimit = static_cast<int>(r.integer("policy.try_limit"));
        p.poolSize = static_cast<int>(r.integer("policy.pool_size"));
        if (p.tryLimit < 1) r.error("policy.try_limit: at least 1");
    }

    // --- milters --------------------------------------------------------------------
    {
        MilterConfig& m = c.milter;
        auto milterList = [&r](const std::string& key, const std::string& pattern) {
            std::vector<std::string> out;
            for (const auto& spec : parseList(r.raw(key, pattern))) {
                if (spec == "none") continue;
                if (spec.rfind("inet:", 0) != 0 && spec.rfind("unix:/", 0) != 0)
                    r.error(key + ": expected inet:host:port or unix:/path, got '" + spec + "'");
                out.push_back(spec);
            }
            return out;
        };
        m.milters = milterList("milter.smtpd_milters", "milter.smtpd_milters");
        for (const auto& l : c.listeners)
            if (conf.hasProperty("listener." + l.name + ".milters"))
                m.perListener[l.name] = milterList("listener." + l.name + ".milters", "listener.*.milters");
        m.connectTimeout = r.duration("milter.connect_timeout");
        m.commandTimeout = r.duration("milter.command_timeout");
        m.contentTimeout = r.duration("milter.content_timeout");
        for (const char* k : {"milter.connect_timeout", "milter.command_timeout", "milter.content_timeout"})
            if (r.duration(k) < Millis(100)) r.error(std::string(k) + ": at least 100ms");
        m.defaultAction = r.str("milter.default_action");
        m.protocol = static_cast<int>(r.integer("milter.protocol"));
        if (m.protocol < 2 || m.protocol > 6) r.error("milter.protocol: must be 2..6");
    }

    // --- outbound delivery ---------------------------------------------------------
    {
        DeliveryConfig& d = c.delivery;
        auto policy = [](const std::string& v) {
            return v == "none" ? TlsPolicy::None : v == "encrypt" ? TlsPolicy::Encrypt
                 : v == "verify" ? TlsPolicy::Verify : v == "dane" ? TlsPolicy::Dane
                 : v == "dane-only" ? TlsPolicy::DaneOnly : TlsPolicy::May;
        };
        // "host:port" (or "[v6]:port"); port 1..65535 required.
        auto checkHostPort = [&r](const std::string& key, const std::string& v) {
            auto colon = v.rfind(':');
            bool ok = colon != std::string::npos && colon > 0 && colon + 1 < v.size();
            if (ok) {
                try {
                    std::size_t used = 0;
                    long port = std::stol(v.substr(colon + 1), &used);
                    ok = used == v.size() - colon - 1 && port > 0 && port <= 65535;
                } catch (...) { ok = false; }
            }
            if (!ok) r.error(key + ": expected host:port, got '" + v + "'");
        };
        d.enabled = r.boolean("delivery.enabled");
        d.maxWorkers = static_cast<int>(r.integer("delivery.max_workers"));
        d.maxPerDomain = static_cast<int>(r.integer("delivery.max_per_domain"));
        d.mxSessionLimit = static_cast<int>(r.integer("delivery.mx_session_limit"));
        if (d.mxSessionLimit < 1) r.error("delivery.mx_session_limit: must be at least 1");
        d.mxAddressLimit = static_cast<int>(r.integer("delivery.mx_address_limit"));
        if (d.mxAddressLimit < 1 || d.mxAddressLimit > 1000) r.error("delivery.mx_address_limit: must be 1..1000");
        if (d.maxWorkers < 1) r.error("delivery.max_workers: must be at least 1");
        if (d.maxPerDomain < 1) r.error("delivery.max_per_domain: must be at least 1");
        for (const auto& step : parseList(r.str("delivery.retry_schedule"))) {
            try {
                d.retrySchedule.push_back(core::parseDuration(step));
            } catch (const std::exception& e) {
                r.error(std::string("delivery.retry_schedule: ") + e.what());
            }
        }
        if (d.retrySchedule.empty()) r.error("delivery.retry_schedule: at least one duration");
        d.maxLifetime = r.duration("delivery.max_lifetime");
        d.delayWarning = r.duration("delivery.delay_warning");
        d.bounceSizeLimit = r.size("delivery.bounce_size_limit");
        d.scanInterval = r.duration("delivery.scan_interval");
        if (d.scanInterval.count() < 100) r.error("delivery.scan_interval: must be at least 100ms");
        d.dnsServer = r.str("delivery.dns_server");
        if (!d.dnsServer.empty()) {
            // The resolver (res_nquery's nsaddr_list) takes an IPv4 server only: an IPv6 one or
            // a name passed --check and then failed every lookup (4.4.3) until max_lifetime.
            checkHostPort("delivery.dns_server", d.dnsServer);
            in_addr ip{};
            if (::inet_pton(AF_INET, d.dnsServer.substr(0, d.dnsServer.rfind(':')).c_str(), &ip) != 1)
                r.error("delivery.dns_server: must be an IPv4 address and port (a.b.c.d:53; an IPv6 resolver can be"
                        " listed in /etc/resolv.conf instead), got '" + d.dnsServer + "'");
        }
        d.dnsTimeout = r.duration("delivery.dns_timeout");
        auto port = r.integer("delivery.smtp_port");
        if (port <= 0 || port > 65535) r.error("delivery.smtp_port: must be 1..65535");
        d.smtpPort = static_cast<std::uint16_t>(port);
        d.relayhost = r.str("delivery.relayhost");
        if (!d.relayhost.empty()) checkHostPort("delivery.relayhost", d.relayhost);
        d.relayhostTls = policy(r.str("delivery.relayhost_tls"));
        d.relayhostAuthFile = r.str("delivery.relayhost_auth_file");
        d.tlsPolicy = policy(r.str("delivery.tls_policy"));
        d.tlsCaFile = r.str("delivery.tls_ca_file");
        d.connectTimeout = r.timeout("delivery.connect_timeout");
        d.greetingTimeout = r.timeout("delivery.greeting_timeout");
        d.mailTimeout = r.timeout("delivery.mail_timeout");
        d.rcptTimeout = r.timeout("delivery.rcpt_timeout");
        d.dataTimeout = r.timeout("delivery.data_timeout");
        d.dataBlockTimeout = r.timeout("delivery.data_block_timeout");
        d.dataDoneTimeout = r.timeout("delivery.data_done_timeout");
        d.mimeOutputConversion = r.boolean("delivery.mime_output_conversion");
        d.connectionCacheTimeLimit = r.duration("delivery.connection_cache_time_limit");
        d.connectionReuseTimeLimit = r.duration("delivery.connection_reuse_time_limit");
        if (d.connectionReuseTimeLimit <= Millis(0)) r.error("delivery.connection_reuse_time_limit: must be more than 0");
        // MTA-STS (RFC 8461).
        d.mtaSts.enabled = r.boolean("delivery.mta_sts");
        d.mtaSts.fetchTimeout = r.duration("delivery.mta_sts.fetch_timeout");
        if (d.mtaSts.fetchTimeout < Millis(100)) r.error("delivery.mta_sts.fetch_timeout: at least 100ms");
        d.mtaSts.maxPolicySize = r.size("delivery.mta_sts.max_policy_size");
        if (d.mtaSts.maxPolicySize < 64 || d.mtaSts.maxPolicySize > 16 * 1024 * 1024)
            r.error("delivery.mta_sts.max_policy_size: must be 64..16M");
        d.mtaSts.caFile = r.str("delivery.mta_sts.ca_file");
        auto stsPort = r.integer("delivery.mta_sts.https_port");
        if (stsPort <= 0 || stsPort > 65535) r.error("delivery.mta_sts.https_port: must be 1..65535");
        d.mtaSts.httpsPort = static_cast<std::uint16_t>(stsPort);
        d.mtaSts.fetchRetry = r.duration("delivery.mta_sts.fetch_retry");
        d.mtaSts.refreshInterval = r.duration("delivery.mta_sts.refresh_interval");
        d.mtaSts.cacheFile = r.str("delivery.mta_sts.cache_file");
        if (d.mtaSts.cacheFile.empty()) d.mtaSts.cacheFile = c.queueDir + "/mta-sts.cache";
        // Per-domain maps: delivery.transport.<domain>, delivery.tls_policy.<domain>.
        for (const char* root : {"delivery.transport", "delivery.tls_policy"}) {
            std::vector<std::string> keys;
            collectKeys(conf, root, keys);
            for (const auto& key : keys) {
                std::string domain = key.substr(std::string(root).size() + 1);
                for (auto& ch : domain) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                std::string value = r.raw(key, std::string(root) + ".*");
                if (root == std::string("delivery.transport")) {
                    checkHostPort(key, value);
                    d.transports[domain] = value;
                } else {
                    d.tlsPolicies[domain] = policy(value);
                }
            }
        }
    }

    // Unknown keys are rejected by name, so a typo never silently means "default".
    {
        AccountSecurityConfig& a = c.accountSecurity;
        a.enabled = r.boolean("account_security.enabled");
        a.flushInterval = r.duration("account_security.flush_interval");
        a.stateWriteInterval = r.duration("account_security.state_write_interval");
        a.window = r.duration("account_security.window");
        a.maxIps = r.integer("account_security.max_ips");
        a.maxNetworks = r.integer("account_security.max_networks");
        a.maxRemoteRejected = r.integer("account_security.max_remote_rejected");
        a.maxBounces = r.integer("account_security.max_bounces");
        a.loginLogMaxEntries = r.integer("account_security.login_log_max_entries");
        a.loginLogMaxAge = r.duration("account_security.login_log_max_age");
        a.maxTrackedAccounts = r.integer("account_security.max_tracked_accounts");
        a.maxPending = r.integer("account_security.max_pending");
        if (a.maxPending < 1 || a.maxPending > 100000000) r.error("account_security.max_pending: must be 1..100000000");
        if (a.maxTrackedAccounts < 1 || a.maxTrackedAccounts > 1000000000)
            r.error("account_security.max_tracked_accounts: must be 1..1000000000");
        if (a.flushInterval < Millis(100) || a.flushInterval > Millis(3600000))
            r.error("account_security.flush_interval: must be 100ms..1h");
        if (a.window < Millis(60000)) r.error("account_security.window: must be at least 1m");
        using Limit = std::pair<const char*, long long>;
        for (auto [key, v] : std::initializer_list<Limit>{{"account_security.max_ips", a.maxIps},
                                                          {"account_security.max_networks", a.maxNetworks},
                                                          {"account_security.max_remote_rejected", a.maxRemoteRejected},
                                                          {"account_security.max_bounces", a.maxBounces},
                                                          {"account_security.login_log_max_entries", a.loginLogMaxEntries}})
            if (v < 0 || v > 1000000000) r.error(std::string(key) + ": must be 0..1000000000");
        if (a.loginLogMaxAge < Millis(60000)) r.error("account_security.login_log_max_age: must be at least 1m");
    }

    std::vector<std::string> present;
    collectKeys(conf, "", present);
    for (const auto& key : present) {
        if (key.rfind("auth.backend.", 0) == 0) {
            auto rest = key.substr(13);
            auto dot = rest.find('.');
            if (dot == std::string::npos || !backendNames.count(rest.substr(0, dot)))
                r.error(key + ": unknown key (backend not listed in auth.backends)");
            continue;  // the plugin validates its own keys
        }
        if (!findKey(key)) {
            r.error(key + ": unknown key");
            continue;
        }
        if (key.rfind("listener.", 0) == 0) {
            auto rest = key.substr(9);
            if (!listenerNames.count(rest.substr(0, rest.find('.'))))
                r.error(key + ": listener not named in 'listeners'");
        }
    }

    // --- DKIM signing ---------------------------------------------------------------
    c.dkim.keyDir = r.str("dkim.key_dir");
    c.dkim.keysInDatabase = r.boolean("dkim.keys_in_database");
    if (c.dkim.keysInDatabase && c.cluster.conninfo.empty())
        r.error("dkim.keys_in_database: needs the shared PostgreSQL (cluster.conninfo)");

    if (!r.errors().empty()) {
        std::ostringstream msg;
        msg << "configuration errors:";
        for (const auto& e : r.errors()) msg << "\n  " << e;
        throw std::runtime_error(msg.str());
    }
    return c;
}

}  // namespace postern::config
