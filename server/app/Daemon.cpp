#include "app/Daemon.h"

#include <openssl/ssl.h>

#include "abuse/AccountSecurity.h"
#include "abuse/AccountSecurityStateFile.h"
#include "abuse/AuthPenalty.h"
#include "app/ClusterPop3Login.h"
#include "app/ClusterSchema.h"
#include "abuse/ConnectionGate.h"
#include "abuse/DegradingStores.h"
#include "abuse/LoginRecordingAuthService.h"
#include "abuse/PgAccountSecurityStore.h"
#include "abuse/OutboundLimits.h"
#include "abuse/PenalizedAuthService.h"
#include "abuse/PgPenaltyStore.h"
#include "abuse/PgRateStore.h"
#include "abuse/RateLimiter.h"
#include "app/ListenerFactory.h"
#include "app/Privileges.h"
#include "auth/AuthCache.h"
#include "auth/HashGate.h"
#include "auth/AuthFacade.h"
#include "auth/PluginLoader.h"
#include "auth/Rehasher.h"
#include "core/EventLine.h"
#include "delivery/BounceSender.h"
#include "delivery/DeliveryAgent.h"
#include "delivery/DeliveryService.h"
#include "grants/MemoryGrantStore.h"
#include "grants/PgGrantStore.h"
#include "grants/WriteBehindGrantStore.h"
#include "metrics/HealthServer.h"
#include "net/TlsContext.h"
#include "pg/Pool.h"
#include "milter/MilterChain.h"
#include "pg/ReadRouter.h"
#include "policyd/PolicyDelegation.h"
#include "queue/FileOps.h"
#include "queue/OutboundQueue.h"
#include "store/ClusterMaildropService.h"
#include "store/GroupCommit.h"
#include "store/MailSpool.h"
#include "store/MaildirStore.h"
#include "store/PgMaildropLock.h"
#include "store/SpoolSink.h"
#include "dkim/KeyStore.h"
#include "dkim/SigningSink.h"

#include <Poco/File.h>
#include <Poco/FileStream.h>
#include <Poco/Logger.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerParams.h>
#include <Poco/Process.h>
#include <Poco/ThreadPool.h>
#include <Poco/Util/TimerTaskAdapter.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <pthread.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

namespace postern::app {

namespace {

const pg::Statement ClusterSchemaVersion{"postern_schema_version",
                                         "SELECT coalesce(max(version), 0) FROM schema_migrations"};

// An exclusive flock on <dir>/posternd.lock, held for the process's life (the descriptor is
// closed by ~Daemon). Read-only, 0644: a file left by a root start does not stop a start as
// server.user. Throws when another process holds it.
int lockQueueDirectory(const std::string& dir) {
    if (!queue::makeDirectories(dir, 0700))
        throw std::runtime_error("cannot create server.queue_dir " + dir + ": " + std::strerror(errno));
    const std::string path = dir + "/posternd.lock";
    int fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(fd);
        if (e == EWOULDBLOCK)
            throw TransientStartupError("server.queue_dir " + dir + " is in use by another posternd (" + path +
                                        " is locked); stop it first");
        throw std::runtime_error("cannot lock " + path + ": " + std::strerror(e));
    }
    return fd;
}

Poco::Logger& serverLog() { return Poco::Logger::get("postern.server"); }

class GrantSweeper : public Poco::Util::TimerTask {
public:
    GrantSweeper(grants::MemoryGrantStore& store, Telemetry& telemetry) : store_(store), telemetry_(telemetry) {}
    void run() override { telemetry_.grantsExpired(store_.sweep()); }

private:
    grants::MemoryGrantStore& store_;
    Telemetry& telemetry_;
};

// With delivery off nothing else rescans the queue, so changes posternctl makes from another
// process (queue delete) would leave the size accounting, and with it 452 4.3.1 and the
// queue gauges, stale until a restart (review finding).
class QueueRescan : public Poco::Util::TimerTask {
public:
    explicit QueueRescan(queue::OutboundQueue& queue) : queue_(queue) {}
    void run() override { queue_.refreshStats(); }

private:
    queue::OutboundQueue& queue_;
};

const char* protocolName(const config::ListenerConfig& l) {
    return l.protocol == config::Protocol::Pop3 ? "pop3" : "smtp";
}
const char* roleName(const config::ListenerConfig& l) {
    if (l.protocol == config::Protocol::Pop3) return "-";
    return l.role == config::SmtpRole::Submission ? "submission" : "mx";
}
const char* tlsName(const config::ListenerConfig& l) {
    return l.tls == config::TlsMode::Implicit ? "implicit" : l.tls == config::TlsMode::StartTls ? "starttls" : "none";
}

}  // namespace

// Deletes expired shared rows (grants, penalty and rate counters, lapsed maildrop leases)
// in small batches.
struct Daemon::ClusterSweeper {
    grants::PgGrantStore* grants;
    abuse::PgPenaltyStore* penalties;
    abuse::PgRateStore* rates;
    store::PgMaildropLock* leases;
    Telemetry* telemetry;
    void onTimer(Poco::Util::TimerTask&) {
        auto now = std::chrono::system_clock::now();
        if (grants)
            if (auto n = grants->sweep()) telemetry->grantsExpired(*n);
        if (penalties) penalties->sweep(now);
        if (rates) rates->sweep(now);
        if (leases) leases->sweep();
    }
};

Daemon::Daemon(DaemonSettings settings) : settings_(std::move(settings)) {}

Daemon::~Daemon() {
    // The held-grant store goes before the pool: nothing may call into it afterwards.
    if (clusterPool_) clusterPool_->setUpListener({});
    if (queueLockFd_ >= 0) ::close(queueLockFd_);
}

void Daemon::refuseRootWithoutUser() const {
    // Fail before binding anything if we would end up serving as root.
    const auto& p = settings_.process;
    if (::geteuid() == 0 && p.user.empty() && !p.allowRoot) app::dropPrivileges(p.user, p.group, p.allowRoot);
}

void Daemon::checkSecretFiles() const {
    checkSecretFile(settings_.tls.keyFile, "tls.key_file");
    if (!settings_.tls.ecdsaKeyFile.empty()) checkSecretFile(settings_.tls.ecdsaKeyFile, "tls.ecdsa_key_file");
}

void Daemon::checkFiles() {
    buildTls();
    auth::PluginLoader loader(settings_.auth.pluginDir);
    for (const auto& b : settings_.auth.backends) {
        (void)loader.load(b.plugin, b.name, b.params);  // unloaded again at once
    }
    if (!settings_.dkim.keyDir.empty()) (void)dkim::loadKeyDir(settings_.dkim.keyDir);
    if (settings_.cluster.enabled && !settings_.cluster.passwordFile.empty()) {
        (void)pg::readPasswordFile(settings_.cluster.passwordFile);
    }
    if (settings_.delivery.enabled && !settings_.delivery.relayhostAuthFile.empty()) {
        (void)delivery::DeliveryAgent::readCredentialsFile(settings_.delivery.relayhostAuthFile);
    }
    // The CA bundles delivery loads (delivery.tls_ca_file; MTA-STS's own), as OpenSSL loads them.
    for (const auto& [key, file] : {std::pair<const char*, std::string>{"delivery.tls_ca_file", settings_.delivery.tlsCaFile},
                                    {"delivery.mta_sts.ca_file", settings_.delivery.mtaSts.enabled
                                                                     ? settings_.delivery.mtaSts.caFile
                                                                     : std::string()}}) {
        if (!settings_.delivery.enabled || file.empty()) continue;
        std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
        if (!ctx || SSL_CTX_load_verify_locations(ctx.get(), file.c_str(), nullptr) != 1)
            throw Poco::IOException(std::string(key) + " " + file + ": cannot load the CA certificates");
    }
    // A single node's account-security state and flags files, which start-up loads: read and
    // parsed only (--check writes nothing; review finding: it renamed a damaged file aside,
    // and the real start then had nothing to report). An unreadable file fails the check as
    // it fails the start; a damaged one is said here and set aside by the start.
    const abuse::AccountSecuritySettings& a = settings_.accountSecurity;
    if ((a.enabled || a.loginLogMaxEntries != 0) && !settings_.cluster.enabled && !a.statePath.empty()) {
        for (const std::string& path : {a.statePath, a.statePath + ".flags"}) {
            const abuse::StateFileLoad loaded = abuse::loadAccountSecurityState(path);  // throws when unreadable
            if (loaded.status == abuse::StateFileLoad::Status::Corrupt)
                std::cerr << "posternd: warning: " << path << " is damaged (" << loaded.error
                          << "): the start will set it aside as " << path << ".corrupt\n";
        }
    }
}

void Daemon::buildTls() {
    if (!settings_.tlsEnabled) return;
    checkSecretFiles();
    tls_ = net::makeServerContext(settings_.tls);
}

void Daemon::buildAuth() {
    const AuthSettings& a = settings_.auth;
    loader_ = std::make_unique<auth::PluginLoader>(a.pluginDir);
    std::vector<auth::BackendBinding> chain;
    handles_.reserve(a.backends.size());  // the chain points into the handles
    for (const auto& b : a.backends) {
        handles_.push_back(loader_->load(b.plugin, b.name, b.params));
        const bool rehash = a.rehashBackends.count(b.name) != 0 && a.rehashBackends.at(b.name);
        // The ldap plugin checks passwords itself (a bind).
        chain.push_back({b.name, handles_.back().get(), b.domains, rehash, b.plugin == "ldap"});
        serverLog().information(core::EventLine("backend.loaded")
                                    .add("name", b.name)
                                    .add("plugin", handles_.back().pluginName())
                                    .add("version", handles_.back().pluginVersion())
                                    .add("rehash_on_login", rehash ? "true" : "false")
                                    .str());
    }
    facade_ = std::make_unique<auth::AuthFacade>(chain);
    facade_->setDummyScheme(a.rehash.target);  // auth.default_scheme
    if (std::any_of(chain.begin(), chain.end(), [](const auth::BackendBinding& b) { return b.rehashOnLogin; })) {
        rehasher_ = std::make_unique<auth::Rehasher>(a.rehash, telemetry_);
        facade_->setRehasher(rehasher_.get());
    }
    authCache_ = std::make_unique<auth::AuthCache>(a.cache);
    if (authCache_->enabled()) facade_->setCache(authCache_.get());
    facade_->setAppPasswordLastUsedInterval(a.appPasswordLastUsedInterval);
    hashGate_ = std::make_unique<auth::HashGate>(a.maxParallelHashes, a.hashWaitTimeout);
    facade_->setHashGate(hashGate_.get());
    facade_->setObserver([this](std::string_view svc, std::string_view backend, std::string_view result, double s) {
        telemetry_.authResult(svc, backend, result, s);
    });
}

void Daemon::buildCluster() {
    const ClusterSettings& c = settings_.cluster;
    if (!c.enabled) return;
    pg::ConnectSettings cs = c.connect;
    if (!c.passwordFile.empty()) cs.password = pg::readPasswordFile(c.passwordFile);  // read now, still privileged
    clusterPool_ = std::make_unique<pg::Pool>(cs);
    // Refused (exit 78) when the database says its schema is older than this release needs;
    // one that cannot be asked now (down at boot) does not stop the start.
    const pg::QueryResult v = clusterPool_->execute(ClusterSchemaVersion, {});
    long have = -1;
    if (v.failed() && v.sqlState == "42P01") {
        have = 0;  // no schema_migrations: never migrated
    } else if (v.failed()) {
        serverLog().warning(core::EventLine("cluster.schema_unknown").text("error", v.error).str());
    } else if (!v.rows.empty() && !v.rows[0].empty() && v.rows[0][0]) {
        try {
            have = std::stol(*v.rows[0][0]);
        } catch (const std::exception&) {
            have = -1;
        }
    }
    if (have >= 0 && have < RequiredClusterSchema)
        throw std::runtime_error("the cluster database's schema is at version " + std::to_string(have) +
                                 "; this release needs " + std::to_string(RequiredClusterSchema) +
                                 ": run 'posternctl db migrate' first");
    if (!c.readConninfo.empty()) {
        // Grant lookups on streaming replicas: same password, pool size and timeouts.
        pg::ConnectSettings rs = cs;
        rs.conninfo = c.readConninfo;
        rs.applicationName = "postern-cluster-replica";
        clusterReads_ = std::make_unique<pg::ReadRouter>(*clusterPool_, std::make_unique<pg::Pool>(rs),
                                                         c.replicaMaxLag, "cluster");
    }
    // In a cluster the penalty and rate counters are shared (a bot spreading guesses over
    // nodes is still counted); while the shared PostgreSQL is down each node counts alone.
    pgPenalty_ = std::make_unique<abuse::PgPenaltyStore>(*clusterPool_);
    pgRates_ = std::make_unique<abuse::PgRateStore>(*clusterPool_);
    serverLog().information(core::EventLine("cluster.on").add("pool_size", cs.poolSize).str());
}

void Daemon::buildAbuse() {
    abuse::PenaltyStorePtr penaltyStore;
    if (pgPenalty_) penaltyStore = std::make_unique<abuse::DegradingPenaltyStore>(*pgPenalty_);
    penalty_ = std::make_unique<abuse::AuthPenalty>(settings_.penalty, std::move(penaltyStore));
    guardedAuth_ = std::make_unique<abuse::PenalizedAuthService>(*facade_, *penalty_);

    abuse::RateStorePtr rateStore;
    if (pgRates_) rateStore = std::make_unique<abuse::DegradingRateStore>(*pgRates_);
    rateLimiter_ = std::make_unique<abuse::RateLimiter>(settings_.limits, std::move(rateStore));
    outboundLimits_ = std::make_unique<abuse::OutboundLimits>(*rateLimiter_);

    gate_ = std::make_unique<abuse::ConnectionGate>(settings_.gate);
    // Policy delegation (policy.service; validated at load, connects to nothing yet).
    policy_ = policyd::PolicyDelegation::fromConfig(settings_.policy);
    buildAccountSecurity();
}

void Daemon::buildAccountSecurity() {
    const abuse::AccountSecuritySettings& a = settings_.accountSecurity;
    if (!a.enabled && a.loginLogMaxEntries == 0) return;
    // In a cluster the counters, flags and login log are shared (a flag holds the account on
    // every node); a single node keeps them in memory. Either way nothing is written per login.
    if (clusterPool_)
        accountStore_ = std::make_unique<abuse::PgAccountSecurityStore>(*clusterPool_);
    else {
        auto memory = std::make_unique<abuse::MemoryAccountSecurityStore>(a.statePath);  // loads the state file
        memory->setWriteInterval(a.stateWriteInterval);
        accountStore_ = std::move(memory);
    }
    auto* flagged = &telemetry_.registry().counterFamily(
        "postern_accounts_flagged_total", "Accounts this node flagged as compromised (outbound mail held), by reason",
        {"reason"});
    accountSecurity_ = std::make_unique<abuse::AccountSecurity>(
        a, *accountStore_, [flagged](const abuse::AccountFlag& f) { flagged->labels({f.reason}).inc(); });
    // Login entries the store did not keep (untracked names, logs past max_tracked_accounts).
    auto* events = &telemetry_.registry().counterFamily("postern_events_total", "Other operator events",
                                                         {"event", "label"});
    accountSecurity_->setCountHook([events](std::string_view label, std::uint64_t n) {
        events->labels({"account_security", label}).inc(n);
    });
    recordedAuth_ = std::make_unique<abuse::LoginRecordingAuthService>(*guardedAuth_, *accountSecurity_);
    // An account blocked by guesses from elsewhere stays open to the addresses it logged in from.
    penalty_->setKnownAddresses([security = accountSecurity_.get()](const std::string& user, const std::string& ip,
                                                                    unsigned prefix) {
        return security->knownAddress(user, ip, prefix);
    });
    telemetry_.registry().gaugeCallback("postern_accounts_held", "Accounts whose outbound mail is held (this node's view)",
                                        [this] { return static_cast<double>(accountSecurity_->heldCount()); });
    telemetry_.registry().gaugeCallback(
        "postern_login_log_entries_dropped",
        "Login log entries dropped since start because the store could not take them within account_security.max_pending",
        [this] { return static_cast<double>(accountSecurity_->droppedLogins()); });
}

void Daemon::buildGrants() {
    const GrantSettings& g = settings_.grants;
    if (!g.enabled) return;
    if (clusterPool_) {
        pgGrants_ = std::make_unique<grants::PgGrantStore>(*clusterPool_, g.pg, clusterReads_.get());
        // A grant PostgreSQL cannot store is held (and honoured) here and written
        // through when it is back: an outage must not turn into a 5xx relay refusal.
        heldGrants_ = std::make_unique<grants::WriteBehindGrantStore>(*pgGrants_, g.writeBehind, telemetry_);
        heldGrants_->start();
        // Held grants go out as soon as any call finds PostgreSQL back, not after the rest
        // of their backoff (meanwhile other nodes would refuse the relay).
        clusterPool_->setUpListener([held = heldGrants_.get()] { held->databaseUp(); });
        grantStore_ = heldGrants_.get();
    } else {
        memoryGrants_ = std::make_unique<grants::MemoryGrantStore>(g.lifetime, g.ipv6Prefix);
        grantStore_ = memoryGrants_.get();
    }
}

void Daemon::buildStorage() {
    const StoreSettings& s = settings_.store;
    // The directories this start makes (as root, when started as root) go to server.user
    // below, so it can write into them after the drop. Ones that exist are left as they are:
    // the operator's /var/mail or an NFS export are not ours to chown.
    const auto& p = settings_.process;
    const std::string& q = settings_.queue.dir;
    std::vector<std::string> made;
    for (const std::string& d : {s.mailRoot, q, q + "/incoming", q + "/data", q + "/envelope"})
        if (::access(d.c_str(), F_OK) != 0) made.push_back(d);
    Poco::File(s.mailRoot).createDirectories();
    mailStore_ = std::make_unique<store::MaildirStore>(s.mailRoot, s.hostname);
    mailStore_->setTmpCleanupAge(s.tmpCleanupAge);
    mailStore_->setUsageCacheSize(s.quotaCacheSize);
    mailStore_->setDovecotUidlist(s.dovecotUidlist);
    mailSpool_ = std::make_unique<store::MailSpool>(s.mailRoot, s.hostname);  // started after the privilege drop
    // In a cluster two nodes must never open one mailbox: a lease row in PostgreSQL in
    // front of the local flock; a crashed node's leases lapse after cluster.lock_lease.
    maildrops_ = mailStore_.get();
    if (clusterPool_) {
        maildropLock_ = std::make_unique<store::PgMaildropLock>(*clusterPool_, settings_.cluster.lockLease);
        clusterMaildrops_ =
            std::make_unique<store::ClusterMaildropService>(*mailStore_, *maildropLock_, settings_.cluster.nodeId);
        maildrops_ = clusterMaildrops_.get();
    }
    // One daemon per queue, before its recovery: a second posternd started on the same
    // configuration (a debug run beside the service) deleted the running one's message data
    // in flight as crash leftovers, then failed to bind. Postfix has master.lock for this.
    queueLockFd_ = lockQueueDirectory(settings_.queue.dir);
    queue_ = std::make_unique<queue::OutboundQueue>(settings_.queue.dir, settings_.queue.limits);
    if (auto removed = queue_->recover())
        serverLog().notice(core::EventLine("queue.recover").add("removed", removed).str());
    app::handOverDirectories(made, p.user, p.group);
    sink_ = std::make_unique<store::SpoolSink>(*mailStore_, *queue_);
    // DSN "delivered" reports (RFC 3461 NOTIFY=SUCCESS) for local recipients, through the
    // sink once the message is stored (also with delivery.enabled=false).
    successReports_ = std::make_unique<delivery::BounceSender>(
        *sink_, *facade_, settings_.process.hostname, static_cast<std::size_t>(settings_.delivery.bounceSizeLimit));
    sink_->setDeliveredHook([this](const core::Envelope& e, const std::string& id, const std::string& path) {
        successReports_->sendDelivered(e, id, path);
    });
    // Outbound delivery: after the sink (bounces go through it); reads the smarthost
    // password file now, while still privileged. delivery.enabled=false: nothing is sent.
    if (settings_.delivery.enabled)
        delivery_ = std::make_unique<delivery::DeliveryService>(settings_.delivery, settings_.process.hostname,
                                                                *queue_, *sink_, *facade_);
    if (delivery_ && accountSecurity_)
        delivery_->setAccountSecurity(accountSecurity_.get(), accountSecurity_.get());
    if (delivery_) {
        // Outbound TLS policy outcomes (dane, mta-sts, verify, encrypt, may, none) and why DANE refused.
        auto* tls = &telemetry_.registry().counterFamily(
            "postern_delivery_tls_total", "Delivery attempts per recipient by TLS policy in force and result (ok|fail)",
            {"policy", "result"});
        auto* dane = &telemetry_.registry().counterFamily(
            "postern_delivery_dane_failures_total", "Deliveries deferred by DANE (RFC 7672), by reason", {"reason"});
        delivery_->setTlsOutcomeSink([tls, dane](const std::string& policy, const std::string& result,
                                                 const std::string& daneFailure) {
            tls->labels({policy, result}).inc();
            if (!daneFailure.empty()) dane->labels({daneFailure}).inc();
        });
    }
    if (delivery_) delivery_->setCounters(&telemetry_);
    if (delivery_ && clusterPool_) delivery_->shareMtaStsPolicies(*clusterPool_);  // MTA-STS cache, table 007
}

// DKIM (dkim.*): keys from the key directory and/or the shared PostgreSQL; a bad key file
// fails start-up naming it. Only the sessions' sink signs (bounces and reports do not).
void Daemon::buildDkim() {
    const config::DkimConfig& d = settings_.dkim;
    if (d.keyDir.empty() && !d.keysInDatabase) return;
    dkimKeys_ = std::make_unique<dkim::KeyStore>();
    dkim::KeyMap keys;
    if (!d.keyDir.empty()) keys = dkim::loadKeyDir(d.keyDir);
    if (d.keysInDatabase && clusterPool_) {
        try {
            dkim::mergeKeys(keys, dkim::loadKeyTable(*clusterPool_));
        } catch (const dkim::KeyError& e) {  // the database may be down: sign with the files, retry on SIGHUP
            serverLog().error(core::EventLine("dkim.keys").add("result", "fail").text("error", e.what()).str());
        }
    }
    dkimKeys_->replace(std::move(keys));
    dkimSink_ = std::make_unique<dkim::SigningSink>(*sink_, *dkimKeys_, telemetry_);
    serverLog().information(core::EventLine("dkim.keys").add("result", "ok").add("keys", dkimKeys_->keyCount()).str());
}

void Daemon::reloadDkim() {
    if (!dkimKeys_) return;
    const config::DkimConfig& d = settings_.dkim;
    try {
        dkim::KeyMap keys;
        if (!d.keyDir.empty()) keys = dkim::loadKeyDir(d.keyDir);
        if (d.keysInDatabase && clusterPool_) dkim::mergeKeys(keys, dkim::loadKeyTable(*clusterPool_));
        dkimKeys_->replace(std::move(keys));
        serverLog().notice(core::EventLine("dkim.reload").add("result", "ok").add("keys", dkimKeys_->keyCount()).str());
    } catch (const std::exception& e) {
        serverLog().error(core::EventLine("dkim.reload").add("result", "fail").text("error", e.what()).str());
    }
}

void Daemon::buildServices() {
    if (grantStore_) countedGrants_ = std::make_unique<CountingGrantStore>(*grantStore_, telemetry_);
    core::AuthService& auth = recordedAuth_ ? static_cast<core::AuthService&>(*recordedAuth_) : *guardedAuth_;
    core::MessageSink& sessionSink = dkimSink_ ? static_cast<core::MessageSink&>(*dkimSink_) : *sink_;
    services_ = std::make_unique<Services>(tls_, auth, *facade_, countedGrants_.get(), sessionSink, *maildrops_,
                                           registry_, *gate_, *outboundLimits_, telemetry_, policy_.get());
    if (accountSecurity_ && settings_.accountSecurity.enabled) services_->hold = accountSecurity_.get();
    services_->usage = mailStore_.get();
    services_->grantBalancers = core::NetworkList::parse(settings_.grants.balancerNetworks);
    services_->grantExcluded = core::NetworkList::parse(settings_.grants.excludeNetworks);
    if (clusterMaildrops_) {
        // Penalty check, lease and grant of a POP3 login in one statement (schema 005). The
        // password itself was checked through `auth` (login recording included) before.
        pop3Login_ = std::make_unique<ClusterPop3Login>(
            *clusterPool_, *penalty_, *guardedAuth_, *clusterMaildrops_, pgGrants_.get(), countedGrants_.get(),
            [this](bool ok) { telemetry_.count("grant", ok ? "created" : "failed"); });
        services_->pop3Login = pop3Login_.get();
        if (recordedAuth_)  // the login log records this login after the penalty verdict (blocked or ok)
            pop3Login_->setLoginRecorder([this](const core::AuthRequest& r, const std::string& user,
                                                core::AuthStatus s) { recordedAuth_->record(r, user, s); });
    }
    // Milters (milter.smtpd_milters / listener.*.milters): connected per session, not now.
    milters_ = std::make_unique<milter::MilterFactoryImpl>(settings_.milter, &telemetry_);
    if (milters_->empty()) milters_.reset();
    services_->milters = milters_.get();
}

void Daemon::registerGauges() {
    auto& reg = telemetry_.registry();
    reg.gaugeCallback("postern_sessions_active", "Sessions in progress (all listeners)",
                      [this] { return static_cast<double>(registry_.size()); });
    reg.gaugeCallback("postern_queue_messages", "Messages in the outbound queue",
                      [this] { return static_cast<double>(queue_->stats().messages); });
    reg.gaugeCallback("postern_queue_bytes", "Bytes in the outbound queue",
                      [this] { return static_cast<double>(queue_->stats().bytes); });
    reg.gaugeCallback("postern_queue_oldest_age_seconds", "Age of the oldest message waiting for delivery",
                      [this] { return delivery_ ? delivery_->oldestAgeSeconds() : 0.0; });
    if (heldGrants_)
        reg.gaugeCallback("postern_grants_queued", "POP-before-SMTP grants held on this node until PostgreSQL stores them",
                          [this] { return static_cast<double>(heldGrants_->queued()); });
    if (clusterReads_) {
        reg.gaugeCallback("postern_cluster_replica_reads", "Grant lookups answered by a cluster read replica since start",
                          [this] { return static_cast<double>(clusterReads_->counts().replicaReads); });
        reg.gaugeCallback("postern_cluster_replica_fallbacks",
                          "Grant lookups sent to the primary because the replica was down or lagging, since start",
                          [this] { return static_cast<double>(clusterReads_->counts().fallbacks); });
    }
    reg.gaugeCallback("postern_auth_cache_hits", "Authentication cache hits since start",
                      [this] { return static_cast<double>(authCache_->hits()); });
    reg.gaugeCallback("postern_auth_cache_misses", "Authentication cache misses since start",
                      [this] { return static_cast<double>(authCache_->misses()); });
}

void Daemon::startSweepers() {
    timer_ = std::make_unique<Poco::Util::Timer>();
    if (memoryGrants_) {
        const long every = static_cast<long>(settings_.grants.memorySweepInterval.count());
        timer_->scheduleAtFixedRate(new GrantSweeper(*memoryGrants_, telemetry_), every, every);
    }
    if (clusterPool_) {
        // Every node sweeps; the statements skip rows another node is deleting.
        clusterSweeper_ = std::make_unique<ClusterSweeper>(
            ClusterSweeper{pgGrants_.get(), pgPenalty_.get(), pgRates_.get(), maildropLock_.get(), &telemetry_});
        const long every = static_cast<long>(settings_.cluster.sweepInterval.count());
        timer_->scheduleAtFixedRate(
            new Poco::Util::TimerTaskAdapter<ClusterSweeper>(*clusterSweeper_, &ClusterSweeper::onTimer), every, every);
    }
    if (queue_ && !delivery_) {  // the delivery runner rescans every delivery.scan_interval itself
        const long every = static_cast<long>(settings_.delivery.scanInterval.count());
        timer_->scheduleAtFixedRate(new QueueRescan(*queue_), every, every);
    }
}

void Daemon::bindListeners() {
    for (const auto& ls : settings_.listeners) {
        const config::ListenerConfig& l = ls.listener;
        Poco::Net::SocketAddress sa(l.address, l.port);
        Poco::Net::ServerSocket socket;
        // SO_REUSEADDR, never SO_REUSEPORT: a second daemon must fail. An IPv6 listener
        // beside an IPv4 one on the same port is bound IPv6-only (as Postfix and Dovecot bind
        // theirs): dual-stack, "::" would take the IPv4 side too and collide with 0.0.0.0 (or
        // an IPv4 address) of that port, so the pair could not start. Alone on its port it
        // stays dual-stack: "::" serves IPv4 clients too, as it always did.
        try {
            if (sa.family() == Poco::Net::SocketAddress::IPv6) {
                const bool ipv4Beside = std::any_of(settings_.listeners.begin(), settings_.listeners.end(), [&](const auto& o) {
                    return o.listener.port == l.port && config::bindFamily(o.listener.address) == AF_INET;
                });
                socket.bind6(sa, true, false, /*ipV6Only=*/ipv4Beside);
            } else {
                socket.bind(sa, true, false);
            }
            socket.listen(l.backlog);
        } catch (const Poco::Net::NetException& e) {
            const std::string what = "listener " + l.name + ": cannot listen on " + sa.toString() + ": " + e.displayText();
            if (e.code() == EADDRINUSE || e.code() == EADDRNOTAVAIL) throw TransientStartupError(what);
            throw;
        }
        Poco::Net::TCPServerParams::Ptr params = new Poco::Net::TCPServerParams;
        params->setMaxThreads(l.maxThreads);
        params->setMaxQueued(l.maxQueued);
        params->setThreadIdleTime(Poco::Timespan(static_cast<long>(l.idleTime.count() / 1000), 0));
        RunningListener rl;
        rl.name = l.name;
        // Each listener has its own pool: a flood on one port cannot starve the others.
        // Small stacks: an idle session costs little more than its stack (S5: 10,000 idle).
        rl.pool = std::make_unique<Poco::ThreadPool>(l.name, 1, l.maxThreads + 1,
                                                     static_cast<int>(l.idleTime.count() / 1000),
                                                     static_cast<int>(l.stackSize));
        auto* factory = new ConnectionFactory(*services_, ls);
        rl.server = std::make_unique<Poco::Net::TCPServer>(factory, *rl.pool, socket, params);
        Poco::AutoPtr<OverloadFilter> filter = new OverloadFilter(factory->runtime(), *services_, registry_, telemetry_);
        filter->attach(rl.server.get());
        rl.server->setConnectionFilter(filter);
        serverLog().information(core::EventLine("listener.up")
                                    .add("name", l.name)
                                    .add("address", sa.toString())
                                    .add("protocol", protocolName(l))
                                    .add("role", roleName(l))
                                    .add("tls", tlsName(l))
                                    .add("max_threads", l.maxThreads)
                                    .str());
        listeners_.push_back(std::move(rl));
    }
    bindHealth();
}

void Daemon::startGroupCommit() {
    // store.group_commit: local deliveries written to the spool share the syncfs(2) calls of
    // the mail root's file system (two per batch) instead of two fsyncs each (see
    // store/GroupCommit.h).
    if (!settings_.store.groupCommit) return;
    groupCommit_ = store::GroupCommit::forFileSystemOf(mailSpool_->directory());
    if (!groupCommit_) {
        serverLog().warning(core::EventLine("store.group_commit_off")
                                .add("dir", mailSpool_->directory())
                                .text("error", std::strerror(errno))
                                .str());
        return;
    }
    sink_->setGroupCommit(groupCommit_.get(), mailSpool_->device());
}

void Daemon::dropPrivileges() const {
    // Ports are bound and secrets read (TLS key, plugin and cluster password files): from
    // here on no root is needed, so give it up before the first client is served.
    const auto& p = settings_.process;
    app::dropPrivileges(p.user, p.group, p.allowRoot);
}

void Daemon::startServing() {
    // The spool belongs to the user that writes mail; it clears what a crash left before
    // the first message (and before delivery threads, which may write bounces).
    if (std::size_t removed = 0; mailSpool_->start(removed)) {
        mailStore_->setSpool(mailSpool_.get());
        startGroupCommit();
    }
    if (accountSecurity_) {
        // Made here, as the serving user: posternctl user release (single node) drops files in
        // it and this process deletes them.
        if (!settings_.accountSecurity.releaseDir.empty()) Poco::File(settings_.accountSecurity.releaseDir).createDirectories();
        accountSecurity_->flushNow();  // the flagged set before delivery starts: held mail stays held
        accountSecurity_->start();
    }
    // Whole-command (and write) deadlines of sessions, checked every second; a session cut
    // at one has connections.refusal_timeout to say why before it is closed outright.
    registry_.startDeadlines(std::chrono::seconds(1), settings_.sessionGoodbye);
    for (auto& l : listeners_) l.server->start();
    if (health_) {
        health_->start();
        serverLog().information(core::EventLine("health.up").add("address", health_->address().toString()).str());
    }
    if (delivery_) delivery_->start();  // scans the queue: resumes after a crash
    writeReadyFile();
    serverLog().information(
        core::EventLine("ready").add("listeners", listeners_.size()).add("hostname", settings_.process.hostname).str());
}

// Bound with the mail listeners, before the privileges are dropped (a port below 1024 works)
// and before any listener serves: an address not up yet or a port in use is 75 as for them,
// not 78 after clients were already greeted (review finding). Serving starts in startServing().
void Daemon::bindHealth() {
    if (!settings_.health.enabled) return;
    // One series per auth backend: did its last readiness probe (a real query, made for
    // /readyz) answer? Read without probing: a scrape never waits for a frozen backend.
    telemetry_.registry().gaugeFamilyCallback(
        "postern_backend_up", "1 if the auth backend answered its last readiness probe (a real query), else 0",
        {"backend"}, [this] {
            std::vector<metrics::LabeledValue> out;
            for (const auto& h : facade_->lastProbedBackends()) out.push_back({{h.backend}, h.up ? 1.0 : 0.0});
            return out;
        });
    // Ready: listeners up, not draining, every auth backend can answer a real query
    // (a configured domain list is no proof that the directory behind it answers).
    try {
        health_ = std::make_unique<metrics::HealthServer>(
            telemetry_.registry(),
            [this]() -> metrics::Readiness {
                lastReadyProbe_.store(std::chrono::steady_clock::now().time_since_epoch().count() | 1);
                if (draining_.load() || registry_.isShuttingDown()) return {false, "shutting down"};
                std::string down;
                for (const auto& h : facade_->probeBackends()) {
                    if (h.up) continue;
                    if (!down.empty()) down += "; ";
                    down += "backend " + h.backend + ": " + h.detail;
                }
                if (!down.empty()) return {false, down};
                if (clusterPool_ && clusterPool_->execute({"postern_ready", "SELECT 1"}, {}).failed())
                    return {false, "the shared PostgreSQL cannot answer"};
                return {true, ""};
            },
            settings_.health.options);
    } catch (const Poco::Net::NetException& e) {
        const std::string what = "health endpoint: cannot listen on [" + settings_.health.options.address + "]:" +
                                 std::to_string(settings_.health.options.port) + ": " + e.displayText();
        if (e.code() == EADDRINUSE || e.code() == EADDRNOTAVAIL) throw TransientStartupError(what);
        throw Poco::Net::NetException(what);
    }
}

void Daemon::writeReadyFile() const {
    if (settings_.process.readyFile.empty()) return;
    Poco::FileOutputStream ready(settings_.process.readyFile);
    ready << "ready " << Poco::Process::id() << "\n";
}

void Daemon::clearAuthCache() {
    if (!authCache_ || !authCache_->enabled()) return;
    const std::size_t n = authCache_->size();
    authCache_->clear();
    serverLog().notice(core::EventLine("auth.cache_cleared").add("entries", n).str());
}

void Daemon::reloadTls() {
    // A bad pair is refused and the old context stays; sessions already in TLS keep theirs.
    if (!settings_.tlsEnabled) return;
    try {
        checkSecretFiles();
        services_->setTlsContext(net::makeServerContext(settings_.tls));
        serverLog().notice(core::EventLine("tls.reload").add("result", "ok").add("cert", settings_.tls.certFile).str());
    } catch (const Poco::Exception& e) {
        serverLog().error(core::EventLine("tls.reload").add("result", "fail").text("error", e.displayText()).str());
    } catch (const std::exception& e) {
        serverLog().error(core::EventLine("tls.reload").add("result", "fail").text("error", e.what()).str());
    }
}

// server.drain_delay. Closing the listeners at once leaves a balancer that has not yet seen
// /readyz fail (HAProxy: up to fall x inter) sending new clients to a closed port: they get
// silence. So first /readyz turns 503 while every listener keeps serving as before; only
// after the delay do they close. Only when a balancer is polling (a readiness check within
// the last delay): a node without one (a test, a single MX) stops at once. A second
// SIGTERM/SIGINT/SIGQUIT ends the delay early; SIGHUP keeps its meaning.
void Daemon::announceDrain(const sigset_t& signals) {
    const auto delay = settings_.process.drainDelay;
    if (!health_ || delay.count() <= 0) return;
    draining_.store(true);
    using Clock = std::chrono::steady_clock;
    const std::int64_t last = lastReadyProbe_.load();
    const auto sinceProbe = Clock::now().time_since_epoch() - Clock::duration(last);
    if (last == 0 || sinceProbe > delay) return;
    serverLog().information(
        core::EventLine("shutdown.announce").add("delay_ms", static_cast<long>(delay.count())).str());
    const auto until = Clock::now() + delay;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - Clock::now());
        if (left.count() <= 0) return;
        timespec ts{};
        ts.tv_sec = static_cast<time_t>(left.count() / 1000000000);
        ts.tv_nsec = static_cast<long>(left.count() % 1000000000);
        const int sig = sigtimedwait(&signals, nullptr, &ts);
        if (sig < 0) {
            if (errno == EINTR) continue;
            return;  // EAGAIN: the delay is over
        }
        if (sig == SIGHUP) {
            reloadTls();
            reloadDkim();
            clearAuthCache();
            continue;
        }
        serverLog().information(core::EventLine("shutdown.announce_cut").add("signal", sig).str());
        return;
    }
}

bool Daemon::drain(const sigset_t& signals) {
    announceDrain(signals);
    const auto grace = settings_.process.shutdownGrace;
    serverLog().information(core::EventLine("shutdown.begin")
                                .add("sessions", registry_.size())
                                .add("grace_ms", static_cast<long>(grace.count()))
                                .str());
    // Mark the drain first: from now on the acceptor answers new clients 421 / -ERR at once
    // (the acceptor thread may still take a connection before stop() returns), and idle
    // sessions say goodbye.
    registry_.beginShutdown();  // /readyz is 503 from here (or from the drain delay on)
    for (auto& l : listeners_) {
        l.server->stop();  // stop accepting (joins the acceptor thread)
        // And close the listening socket: clients the kernel would still take into the
        // backlog, where nobody answers them for the whole grace period, are refused instead
        // and try the next MX or the balancer's next node at once (as Postfix's master does).
        Poco::Net::ServerSocket listening = l.server->socket();
        listening.close();
    }
    std::size_t left = registry_.waitEmpty(grace);
    if (left > 0) {
        serverLog().warning(core::EventLine("shutdown.abort").add("sessions", left).str());
        registry_.abortAll();
        left = registry_.waitEmpty(std::chrono::milliseconds(2000));
        if (left > 0) {  // blocked in a write to a client that does not read
            registry_.abortAll(/*hard=*/true);
            left = registry_.waitEmpty(std::chrono::milliseconds(2000));
        }
    }
    if (left > 0) {
        // Not blocked on its client (a milter or a backend that does not answer, a hung
        // mail root): such a session would run against the objects destroyed below. Keep
        // what must survive (the account-security state; queued mail is on disk already)
        // and let the caller end the process without destructors.
        // The delivery runner is not stopped: its stop joins workers that may hang on the same
        // thing; queued mail is on disk and is sent again after the restart (a message a
        // next hop had just taken may then arrive twice, as after a crash).
        serverLog().error(core::EventLine("shutdown.stuck").add("sessions", left).str());
        if (accountSecurity_) accountSecurity_->stop();
        if (!settings_.process.readyFile.empty()) std::remove(settings_.process.readyFile.c_str());
        serverLog().information(core::EventLine("shutdown.done").add("stuck_sessions", left).str());
        return false;
    }
    if (delivery_) delivery_->stop();  // cuts transactions in progress; they stay queued
    if (accountSecurity_) accountSecurity_->stop();  // writes what is still recorded
    if (timer_) timer_->cancel(true);
    if (health_) health_->stop();
    // Every session has ended. POCO 1.11's TCPServerDispatcher can leave a pool thread in a
    // timed wait (up to the thread idle time) after stop(), so joining the pools could
    // stall the exit; the threads hold no work, so the servers and pools are left to the
    // process exit instead of being joined.
    for (auto& l : listeners_) {
        (void)l.server.release();
        (void)l.pool.release();
    }
    listeners_.clear();
    if (!settings_.process.readyFile.empty()) std::remove(settings_.process.readyFile.c_str());  // gone already is fine
    core::EventLine done("shutdown.done");
    done.add("auth_cache_hits", static_cast<Poco::UInt64>(authCache_->hits()))
        .add("auth_cache_misses", static_cast<Poco::UInt64>(authCache_->misses()));
    if (groupCommit_) {
        // How much the group commit shared: syncs run (two per batch) vs. waits (one per message).
        auto gc = groupCommit_->stats();
        done.add("group_commit_syncs", static_cast<Poco::UInt64>(gc.syncs))
            .add("group_commit_waits", static_cast<Poco::UInt64>(gc.waiters))
            .add("group_commit_failures", static_cast<Poco::UInt64>(gc.failures));
    }
    serverLog().information(done.str());
    return true;
}

sigset_t blockDaemonSignals() {
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGINT, SIGTERM, SIGQUIT, SIGHUP}) sigaddset(&signals, sig);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    return signals;
}

void runSignalLoop(Daemon& daemon, const sigset_t& signals) {
    for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig != SIGHUP) return;
        daemon.reloadTls();  // SIGHUP: reload certificate and key without dropping sessions
        daemon.reloadDkim();
        daemon.clearAuthCache();
    }
}

}  // namespace postern::app
