#include "app/PosternServer.h"

#include "app/ConnectionRegistry.h"
#include "abuse/AuthPenalty.h"
#include "abuse/ConnectionGate.h"
#include "abuse/DegradingStores.h"
#include "abuse/OutboundLimits.h"
#include "abuse/PenalizedAuthService.h"
#include "abuse/RateLimiter.h"
#include "app/CountingGrantStore.h"
#include "app/ListenerFactory.h"
#include "app/Telemetry.h"
#include "core/EventLine.h"
#include "metrics/HealthServer.h"
#include "app/Privileges.h"
#include "app/Services.h"
#include "auth/AuthFacade.h"
#include "auth/PluginLoader.h"
#include "config/ServerConfig.h"
#include "abuse/PgPenaltyStore.h"
#include "abuse/PgRateStore.h"
#include "grants/MemoryGrantStore.h"
#include "grants/PgGrantStore.h"
#include "grants/WriteBehindGrantStore.h"
#include "pg/Pool.h"
#include "store/ClusterMaildropService.h"
#include "store/PgMaildropLock.h"
#include "net/TlsContext.h"
#include "queue/OutboundQueue.h"
#include "store/MaildirStore.h"
#include "store/SpoolSink.h"
#include "delivery/DeliveryService.h"

#include <Poco/ErrorHandler.h>
#include <Poco/File.h>
#include <Poco/FileStream.h>
#include <Poco/Logger.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerParams.h>
#include <Poco/ThreadPool.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/MapConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/Timer.h>
#include <Poco/Util/TimerTaskAdapter.h>

#include <Poco/Process.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <pthread.h>
#include <unistd.h>
#include <memory>

namespace postern::app {

namespace {

Poco::Logger& serverLog() { return Poco::Logger::get("postern.server"); }

// Anything that escapes a POCO thread (it should not: connections catch everything)
// is logged instead of vanishing.
class LoggingErrorHandler : public Poco::ErrorHandler {
public:
    void exception(const Poco::Exception& e) override {
        serverLog().error(core::EventLine("thread.exception").text("error", e.displayText()).str());
    }
    void exception(const std::exception& e) override {
        serverLog().error(core::EventLine("thread.exception").text("error", e.what()).str());
    }
    void exception() override { serverLog().error(core::EventLine("thread.exception").add("error", "unknown").str()); }
};

class GrantSweeper : public Poco::Util::TimerTask {
public:
    GrantSweeper(grants::MemoryGrantStore& store, Telemetry& telemetry) : store_(store), telemetry_(telemetry) {}
    void run() override { telemetry_.grantsExpired(store_.sweep()); }

private:
    grants::MemoryGrantStore& store_;
    Telemetry& telemetry_;
};

// Deletes expired shared rows (grants, penalty and rate counters) in small batches.
struct ClusterSweeper {
    grants::PgGrantStore* grants;
    abuse::PgPenaltyStore* penalties;
    abuse::PgRateStore* rates;
    Telemetry* telemetry;
    void onTimer(Poco::Util::TimerTask&) {
        auto now = std::chrono::system_clock::now();
        if (grants)
            if (auto n = grants->sweep()) telemetry->grantsExpired(*n);
        if (penalties) penalties->sweep(now);
        if (rates) rates->sweep(now);
    }
};

struct RunningListener {
    std::unique_ptr<Poco::ThreadPool> pool;
    std::unique_ptr<Poco::Net::TCPServer> server;
};

}  // namespace

void PosternServer::defineOptions(Poco::Util::OptionSet& options) {
    ServerApplication::defineOptions(options);
    options.addOption(Poco::Util::Option("help", "h", "Show this help and exit.").required(false).repeatable(false));
    options.addOption(Poco::Util::Option("version", "v", "Show the version and exit.").required(false).repeatable(false));
    options.addOption(Poco::Util::Option("config", "c", "Read the configuration from FILE (default: etc/postern.properties).")
                          .required(false).repeatable(false).argument("FILE"));
    options.addOption(Poco::Util::Option("check", "t", "Validate the configuration and exit (0 = valid).")
                          .required(false).repeatable(false));
    options.addOption(Poco::Util::Option("define", "D", "Override a configuration key, e.g. -D smtp.max_recipients=50.")
                          .required(false).repeatable(true).argument("KEY=VALUE"));
}

void PosternServer::handleOption(const std::string& name, const std::string& value) {
    ServerApplication::handleOption(name, value);
    if (name == "help") {
        helpRequested_ = true;
        stopOptionsProcessing();
    } else if (name == "version") {
        versionRequested_ = true;
    } else if (name == "check") {
        checkOnly_ = true;
    } else if (name == "config") {
        configFile_ = value;
    } else if (name == "define") {
        auto eq = value.find('=');
        if (eq == std::string::npos || eq == 0)
            throw Poco::InvalidArgumentException("--define needs KEY=VALUE, got '" + value + "'");
        defines_.emplace_back(value.substr(0, eq), value.substr(eq + 1));
    }
}

void PosternServer::initialize(Poco::Util::Application& self) {
    if (!helpRequested_ && !versionRequested_) {
        std::string file = configFile_;
        if (file.empty() && Poco::File("etc/postern.properties").exists()) file = "etc/postern.properties";
        if (!file.empty()) loadConfiguration(file, PRIO_DEFAULT);
        // Command-line overrides win over the file (lower number = consulted first).
        Poco::AutoPtr<Poco::Util::MapConfiguration> overrides = new Poco::Util::MapConfiguration;
        for (const auto& [k, v] : defines_) overrides->setString(k, v);
        config().add(overrides, PRIO_APPLICATION - 100, false);
    }
    // Logging is configured from the logging.* keys by POCO's logging subsystem here.
    ServerApplication::initialize(self);
}

void PosternServer::printHelp() {
    Poco::Util::HelpFormatter help(options());
    help.setCommand(commandName());
    help.setUsage("[--config FILE] [-D key=value ...] [--daemon --pidfile=FILE]");
    help.setHeader(
        "Postern: ISP mail server (SMTP submission/MX with AUTH and POP-before-SMTP, POP3). "
        "Every configuration key, its default and meaning is documented in etc/postern.properties.");
    help.setFooter("Signals: SIGTERM/SIGINT stop accepting and let sessions finish within server.shutdown_grace.");
    help.format(std::cout);
}

int PosternServer::main(const std::vector<std::string>&) {
    if (helpRequested_) {
        printHelp();
        return EXIT_OK;
    }
    if (versionRequested_) {
        std::cout << "posternd " << POSTERN_VERSION << std::endl;
        return EXIT_OK;
    }
    try {
        return serve();
    } catch (const Poco::Exception& e) {
        serverLog().fatal(core::EventLine("startup.fail").text("error", e.displayText()).str());
    } catch (const std::exception& e) {
        serverLog().fatal(core::EventLine("startup.fail").text("error", e.what()).str());
    }
    return EXIT_CONFIG;
}

int PosternServer::serve() {
    static LoggingErrorHandler errorHandler;
    Poco::ErrorHandler::set(&errorHandler);

    const config::ServerConfig cfg = config::ServerConfig::load(config());
    if (checkOnly_) {
        std::cout << "configuration OK: " << cfg.listeners.size() << " listeners, " << cfg.backends.size()
                  << " auth backends" << std::endl;
        return EXIT_OK;
    }

    // --- TLS ---------------------------------------------------------------------------
    // Fail before binding anything if we would end up serving as root.
    if (::geteuid() == 0 && cfg.user.empty() && !cfg.allowRoot) dropPrivileges(cfg.user, cfg.group, cfg.allowRoot);

    // Signals are taken synchronously by this thread (sigwait below); every thread
    // started from here on inherits the blocked mask.
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGINT, SIGTERM, SIGQUIT, SIGHUP}) sigaddset(&signals, sig);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    Poco::Net::initializeSSL();
    Poco::Net::Context::Ptr tls;
    const net::TlsSettings tlsSettings{cfg.tls.certFile, cfg.tls.keyFile, cfg.tls.minVersion, cfg.tls.ciphers,
                                       cfg.tls.ciphersuites, cfg.tls.groups,
                                       std::chrono::duration_cast<std::chrono::seconds>(cfg.tls.sessionLifetime),
                                       cfg.tls.sessionCacheSize,
                                       std::chrono::duration_cast<std::chrono::seconds>(cfg.tls.ticketKeyRotation)};
    if (cfg.tls.enabled()) {
        checkSecretFile(cfg.tls.keyFile, "tls.key_file");
        tls = net::makeServerContext(tlsSettings);
    }

    // --- authentication backends (plugins) -----------------------------------------------
    std::string pluginDir = cfg.pluginDir.empty() ? std::string(POSTERN_PLUGIN_BUILD_DIR) : cfg.pluginDir;
    auth::PluginLoader loader(pluginDir);
    std::vector<auth::BackendHandle> handles;
    std::vector<auth::BackendBinding> chain;
    for (const auto& b : cfg.backends) {
        handles.push_back(loader.load(b.plugin, b.name, b.params));
        chain.push_back({b.name, handles.back().get(), b.domains});
        serverLog().information(core::EventLine("backend.loaded")
                                    .add("name", b.name)
                                    .add("plugin", handles.back().pluginName())
                                    .add("version", handles.back().pluginVersion())
                                    .str());
    }
    Telemetry telemetry;
    auth::AuthFacade facade(chain);
    auth::AuthCache authCache({cfg.authCacheSize, cfg.authCacheTtl, cfg.authCacheNegativeTtl});
    if (authCache.enabled()) facade.setCache(&authCache);
    facade.setObserver([&telemetry](std::string_view svc, std::string_view backend, std::string_view result, double s) {
        telemetry.authResult(svc, backend, result, s);
    });

    // --- cluster: shared PostgreSQL (grants, maildrop leases, penalties, rate counters) ----
    std::unique_ptr<pg::Pool> clusterPool;
    if (cfg.cluster.enabled()) {
        pg::ConnectSettings cs;
        cs.conninfo = cfg.cluster.conninfo;
        if (!cfg.cluster.passwordFile.empty())
            cs.password = pg::readPasswordFile(cfg.cluster.passwordFile);  // read now, still privileged
        cs.poolSize = static_cast<std::size_t>(cfg.cluster.poolSize);
        cs.connectTimeout = cfg.cluster.connectTimeout;
        cs.statementTimeout = cfg.cluster.statementTimeout;
        cs.applicationName = "postern-cluster";
        clusterPool = std::make_unique<pg::Pool>(cs);
        serverLog().information(core::EventLine("cluster.on").add("pool_size", cfg.cluster.poolSize).str());
    }

    // --- abuse controls ------------------------------------------------------------------
    abuse::AuthPenaltySettings ps;
    ps.window = cfg.penalty.window;
    ps.maxFailuresIp = static_cast<std::uint32_t>(cfg.penalty.maxFailuresIp);
    ps.maxFailuresAccount = static_cast<std::uint32_t>(cfg.penalty.maxFailuresAccount);
    ps.baseDelay = cfg.penalty.baseDelay;
    ps.maxDelay = cfg.penalty.maxDelay;
    ps.allowNetworks = cfg.penalty.allowNetworks;
    ps.ipv6Prefix = static_cast<unsigned>(cfg.penalty.ipv6Prefix);
    // In a cluster the counters are shared (a bot spreading guesses over nodes is still
    // counted); while the shared PostgreSQL is down each node counts on its own.
    std::unique_ptr<abuse::PgPenaltyStore> pgPenaltyStore;
    abuse::PgPenaltyStore* pgPenalty = nullptr;
    abuse::PenaltyStorePtr penaltyStore;
    if (clusterPool) {
        pgPenaltyStore = std::make_unique<abuse::PgPenaltyStore>(*clusterPool);
        pgPenalty = pgPenaltyStore.get();
        penaltyStore = std::make_unique<abuse::DegradingPenaltyStore>(*pgPenaltyStore);
    }
    abuse::AuthPenalty penalty(ps, std::move(penaltyStore));
    abuse::PenalizedAuthService guardedAuth(facade, penalty);

    abuse::RateLimiterSettings rs;
    auto toLimits = [](const config::RateLimitValues& v) {
        return abuse::RateLimits{static_cast<std::uint32_t>(v.messagesPerHour), static_cast<std::uint32_t>(v.recipientsPerHour),
                                 static_cast<std::uint32_t>(v.messagesPerDay), static_cast<std::uint32_t>(v.recipientsPerDay)};
    };
    rs.user = toLimits(cfg.limits.user);
    rs.ip = toLimits(cfg.limits.ip);
    rs.allowNetworks = cfg.limits.allowNetworks;
    rs.ipv6Prefix = static_cast<unsigned>(cfg.limits.ipv6Prefix);
    std::unique_ptr<abuse::PgRateStore> pgRateStore;
    abuse::PgRateStore* pgRates = nullptr;
    abuse::RateStorePtr rateStore;
    if (clusterPool) {
        pgRateStore = std::make_unique<abuse::PgRateStore>(*clusterPool);
        pgRates = pgRateStore.get();
        rateStore = std::make_unique<abuse::DegradingRateStore>(*pgRateStore);
    }
    abuse::RateLimiter rateLimiter(rs, std::move(rateStore));
    abuse::OutboundLimits outboundLimits(rateLimiter);

    abuse::ConnectionGateSettings gs;
    gs.defaults = {static_cast<std::uint32_t>(cfg.connections.maxPerIp), static_cast<std::uint32_t>(cfg.connections.ratePerIp)};
    for (const auto& l : cfg.listeners) {
        gs.listeners[l.name] = {
            static_cast<std::uint32_t>(l.maxConnectionsPerIp ? l.maxConnectionsPerIp : cfg.connections.maxPerIp),
            static_cast<std::uint32_t>(l.connectionRatePerIp ? l.connectionRatePerIp : cfg.connections.ratePerIp)};
    }
    gs.maxConcurrentTotal = static_cast<std::uint32_t>(cfg.connections.maxTotal);
    gs.allowNetworks = cfg.connections.allowNetworks;
    gs.ipv6Prefix = static_cast<unsigned>(cfg.connections.ipv6Prefix);
    abuse::ConnectionGate gate(gs);

    // --- grants, storage, queue ----------------------------------------------------------
    std::unique_ptr<grants::MemoryGrantStore> memoryGrants;
    std::unique_ptr<grants::PgGrantStore> pgGrants;
    std::unique_ptr<grants::WriteBehindGrantStore> heldGrants;
    core::GrantStore* grantStore = nullptr;
    if (cfg.popBeforeSmtp.lifetime.count() > 0) {
        auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(cfg.popBeforeSmtp.lifetime);
        if (clusterPool) {
            grants::PgGrantSettings gsett;
            gsett.lifetime = lifetime;
            gsett.ipv6PrefixLength = static_cast<unsigned>(cfg.popBeforeSmtp.ipv6Prefix);
            gsett.cacheTtl = cfg.cluster.grantCacheTtl;
            pgGrants = std::make_unique<grants::PgGrantStore>(*clusterPool, gsett);
            // A grant PostgreSQL cannot store is held (and honoured) here and written
            // through when it is back: an outage must not turn into a 5xx relay refusal.
            grants::WriteBehindSettings wb;
            wb.queueLimit = static_cast<std::size_t>(cfg.cluster.grantRetryQueue);
            wb.retryMax = cfg.cluster.grantRetryBackoffMax;
            heldGrants = std::make_unique<grants::WriteBehindGrantStore>(*pgGrants, wb, telemetry);
            heldGrants->start();
            grantStore = heldGrants.get();
        } else {
            memoryGrants = std::make_unique<grants::MemoryGrantStore>(lifetime, cfg.popBeforeSmtp.ipv6Prefix);
            grantStore = memoryGrants.get();
        }
    }
    Poco::File(cfg.mailRoot).createDirectories();
    store::MaildirStore mailStore(cfg.mailRoot, cfg.hostname);
    mailStore.setTmpCleanupAge(std::chrono::duration_cast<std::chrono::seconds>(cfg.storeTmpCleanupAge));
    store::MailSpool mailSpool(cfg.mailRoot, cfg.hostname);  // started after the privilege drop
    // In a cluster two nodes must never open one mailbox: a lease row in PostgreSQL in
    // front of the local flock; a crashed node's leases lapse after cluster.lock_lease.
    std::unique_ptr<store::PgMaildropLock> maildropLock;
    std::unique_ptr<store::ClusterMaildropService> clusterMaildrops;
    core::MaildropService* maildrops = &mailStore;
    if (clusterPool) {
        std::string nodeId = cfg.cluster.nodeId.empty() ? cfg.hostname + "/" + std::to_string(Poco::Process::id())
                                                         : cfg.cluster.nodeId;
        maildropLock = std::make_unique<store::PgMaildropLock>(*clusterPool, cfg.cluster.lockLease);
        clusterMaildrops = std::make_unique<store::ClusterMaildropService>(mailStore, *maildropLock, nodeId);
        maildrops = clusterMaildrops.get();
    }
    queue::OutboundQueue outQueue(cfg.queueDir, queue::QueueLimits{cfg.queueMaxSize, cfg.queueMaxMessages});
    if (auto removed = outQueue.recover())
        serverLog().notice(core::EventLine("queue.recover").add("removed", removed).str());
    store::SpoolSink sink(mailStore, outQueue);
    // Outbound delivery: after the sink (bounces go through it); reads the smarthost
    // password file now, while still privileged. delivery.enabled=false: nothing is sent.
    std::unique_ptr<delivery::DeliveryService> deliveryService;
    if (cfg.delivery.enabled)
        deliveryService = std::make_unique<delivery::DeliveryService>(cfg.delivery, cfg.hostname, outQueue, sink, facade);

    std::unique_ptr<CountingGrantStore> countedGrants;
    if (grantStore) countedGrants = std::make_unique<CountingGrantStore>(*grantStore, telemetry);

    ConnectionRegistry registry;
    Services services{cfg, tls, guardedAuth, facade, countedGrants.get(), sink, *maildrops, registry};
    services.gate = &gate;
    services.limiter = &outboundLimits;
    services.telemetry = &telemetry;
    services.events = &telemetry;

    auto& reg = telemetry.registry();
    reg.gaugeCallback("postern_sessions_active", "Sessions in progress (all listeners)",
                      [&registry] { return static_cast<double>(registry.size()); });
    reg.gaugeCallback("postern_queue_messages", "Messages in the outbound queue",
                      [&outQueue] { return static_cast<double>(outQueue.stats().messages); });
    reg.gaugeCallback("postern_queue_bytes", "Bytes in the outbound queue",
                      [&outQueue] { return static_cast<double>(outQueue.stats().bytes); });
    reg.gaugeCallback("postern_queue_oldest_age_seconds", "Age of the oldest message waiting for delivery",
                      [&deliveryService] { return deliveryService ? deliveryService->oldestAgeSeconds() : 0.0; });
    if (heldGrants)
        reg.gaugeCallback("postern_grants_queued", "POP-before-SMTP grants held on this node until PostgreSQL stores them",
                          [&heldGrants] { return static_cast<double>(heldGrants->queued()); });
    reg.gaugeCallback("postern_auth_cache_hits", "Authentication cache hits since start",
                      [&authCache] { return static_cast<double>(authCache.hits()); });
    reg.gaugeCallback("postern_auth_cache_misses", "Authentication cache misses since start",
                      [&authCache] { return static_cast<double>(authCache.misses()); });

    ClusterSweeper clusterSweeper{pgGrants.get(), pgPenalty, pgRates, &telemetry};
    Poco::Util::Timer timer;
    if (memoryGrants) timer.scheduleAtFixedRate(new GrantSweeper(*memoryGrants, telemetry), 60'000, 60'000);
    if (clusterPool) {
        // Every node sweeps; the statements skip rows another node is deleting.
        const long every = static_cast<long>(cfg.cluster.sweepInterval.count());
        timer.scheduleAtFixedRate(
            new Poco::Util::TimerTaskAdapter<ClusterSweeper>(clusterSweeper, &ClusterSweeper::onTimer), every, every);
    }

    // --- listeners -------------------------------------------------------------------------
    std::vector<RunningListener> listeners;
    for (const auto& l : cfg.listeners) {
        Poco::Net::SocketAddress sa(l.address, l.port);
        Poco::Net::ServerSocket socket;
        socket.bind(sa, true, false);  // SO_REUSEADDR, never SO_REUSEPORT: a second daemon must fail
        socket.listen(1024);
        Poco::Net::TCPServerParams::Ptr params = new Poco::Net::TCPServerParams;
        params->setMaxThreads(l.maxThreads);
        params->setMaxQueued(l.maxQueued);
        params->setThreadIdleTime(Poco::Timespan(static_cast<long>(l.idleTime.count() / 1000), 0));
        RunningListener rl;
        // Each listener has its own pool: a flood on one port cannot starve the others.
        // Small stacks: an idle session costs little more than its stack (S5: 10,000 idle).
        rl.pool = std::make_unique<Poco::ThreadPool>(l.name, 1, l.maxThreads + 1,
                                                     static_cast<int>(l.idleTime.count() / 1000),
                                                     static_cast<int>(l.stackSize));
        auto* factory = new ConnectionFactory(services, l);
        rl.server = std::make_unique<Poco::Net::TCPServer>(factory, *rl.pool, socket, params);
        Poco::AutoPtr<OverloadFilter> filter = new OverloadFilter(l, registry);
        filter->attach(rl.server.get());
        rl.server->setConnectionFilter(filter);
        serverLog().information(core::EventLine("listener.up")
                                    .add("name", l.name)
                                    .add("address", sa.toString())
                                    .add("protocol", l.protocol == config::Protocol::Pop3 ? "pop3" : "smtp")
                                    .add("role", l.protocol == config::Protocol::Pop3
                                                     ? "-"
                                                     : (l.role == config::SmtpRole::Submission ? "submission" : "mx"))
                                    .add("tls", l.tls == config::TlsMode::Implicit   ? "implicit"
                                                : l.tls == config::TlsMode::StartTls ? "starttls"
                                                                                     : "none")
                                    .add("max_threads", l.maxThreads)
                                    .str());
        listeners.push_back(std::move(rl));
    }
    // Ports are bound and secrets read (TLS key, plugin password files): from here on
    // no root is needed, so give it up before the first client is served (the servers
    // are started only after the drop).
    dropPrivileges(cfg.user, cfg.group, cfg.allowRoot);
    // The spool belongs to the user that writes mail; it clears what a crash left before
    // the first message (and before delivery threads, which may write bounces).
    if (std::size_t removed = 0; mailSpool.start(removed)) mailStore.setSpool(&mailSpool);
    for (auto& l : listeners) l.server->start();

    std::unique_ptr<metrics::HealthServer> health;
    if (cfg.healthPort != 0) {
        metrics::HealthServerOptions ho;
        ho.address = cfg.healthAddress;
        ho.port = cfg.healthPort;
        ho.readyTimeout = cfg.healthReadyTimeout;  // the check below runs on a probe thread, bounded by this
        // One series per auth backend: did its readiness probe (a real query) answer?
        // Shares the probes' short cache with /readyz.
        telemetry.registry().gaugeFamilyCallback(
            "postern_backend_up", "1 if the auth backend answered its readiness probe (a real query), else 0",
            {"backend"}, [&facade] {
                std::vector<metrics::LabeledValue> out;
                for (const auto& h : facade.probeBackends()) out.push_back({{h.backend}, h.up ? 1.0 : 0.0});
                return out;
            });
        // Ready: listeners up, not draining, every auth backend can answer a real query
        // (a configured domain list is no proof that the directory behind it answers).
        health = std::make_unique<metrics::HealthServer>(
            telemetry.registry(),
            [&registry, &facade, &clusterPool]() -> metrics::Readiness {
                if (registry.isShuttingDown()) return {false, "shutting down"};
                std::string down;
                for (const auto& h : facade.probeBackends()) {
                    if (h.up) continue;
                    if (!down.empty()) down += "; ";
                    down += "backend " + h.backend + ": " + h.detail;
                }
                if (!down.empty()) return {false, down};
                if (clusterPool && clusterPool->execute({"postern_ready", "SELECT 1"}, {}).failed())
                    return {false, "the shared PostgreSQL cannot answer"};
                return {true, ""};
            },
            ho);
        health->start();
        serverLog().information(core::EventLine("health.up").add("address", health->address().toString()).str());
    }
    if (deliveryService) deliveryService->start();  // scans the queue: resumes after a crash

    if (!cfg.readyFile.empty()) {
        Poco::FileOutputStream ready(cfg.readyFile);
        ready << "ready " << Poco::Process::id() << "\n";
    }
    serverLog().information(
        core::EventLine("ready").add("listeners", listeners.size()).add("hostname", cfg.hostname).str());

    for (;;) {
        int sig = 0;
        if (sigwait(&signals, &sig) != 0) continue;
        if (sig != SIGHUP) break;
        // SIGHUP: reload certificate and key without dropping sessions; a bad pair is
        // refused and the old context stays.
        if (!cfg.tls.enabled()) continue;
        try {
            checkSecretFile(cfg.tls.keyFile, "tls.key_file");
            services.setTlsContext(net::makeServerContext(tlsSettings));
            serverLog().notice(core::EventLine("tls.reload").add("result", "ok").add("cert", cfg.tls.certFile).str());
        } catch (const Poco::Exception& e) {
            serverLog().error(core::EventLine("tls.reload").add("result", "fail").text("error", e.displayText()).str());
        } catch (const std::exception& e) {
            serverLog().error(core::EventLine("tls.reload").add("result", "fail").text("error", e.what()).str());
        }
    }

    // --- graceful drain --------------------------------------------------------------------
    serverLog().information(core::EventLine("shutdown.begin")
                                .add("sessions", registry.size())
                                .add("grace_ms", static_cast<long>(cfg.shutdownGrace.count()))
                                .str());
    // Mark the drain first: from now on the acceptor answers new clients 421 / -ERR at once
    // (the acceptor thread may still take a connection before stop() returns), and idle
    // sessions say goodbye.
    registry.beginShutdown();                    // /readyz turns 503 from here
    for (auto& l : listeners) l.server->stop();  // stop accepting
    std::size_t left = registry.waitEmpty(cfg.shutdownGrace);
    if (left > 0) {
        serverLog().warning(core::EventLine("shutdown.abort").add("sessions", left).str());
        registry.abortAll();
        registry.waitEmpty(std::chrono::milliseconds(2000));
    }
    if (deliveryService) deliveryService->stop();  // cuts transactions in progress; they stay queued
    timer.cancel(true);
    if (health) health->stop();
    // Every session has ended. POCO 1.11's TCPServerDispatcher can leave a pool thread in a
    // timed wait (up to the thread idle time) after stop(), so joining the pools could
    // stall the exit; the threads hold no work, so the servers and pools are left to the
    // process exit instead of being joined.
    for (auto& l : listeners) {
        (void)l.server.release();
        (void)l.pool.release();
    }
    listeners.clear();
    if (!cfg.readyFile.empty()) std::remove(cfg.readyFile.c_str());  // gone already is fine
    serverLog().information(core::EventLine("shutdown.done")
                                .add("auth_cache_hits", static_cast<Poco::UInt64>(authCache.hits()))
                                .add("auth_cache_misses", static_cast<Poco::UInt64>(authCache.misses()))
                                .str());
    Poco::Net::uninitializeSSL();
    return EXIT_OK;
}

}  // namespace postern::app
