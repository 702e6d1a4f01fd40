#include "app/PosternServer.h"

#include "app/Daemon.h"
#include "policyd/PolicyDelegation.h"
#include "app/ModuleSettings.h"
#include "config/ServerConfig.h"
#include "core/EventLine.h"

#include <Poco/ErrorHandler.h>
#include <Poco/File.h>
#include <Poco/Logger.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/MapConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

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

}  // namespace

void PosternServer::defineOptions(Poco::Util::OptionSet& options) {
    ServerApplication::defineOptions(options);
    options.addOption(Poco::Util::Option("help", "h", "Show this help and exit.").required(false).repeatable(false));
    options.addOption(Poco::Util::Option("version", "v", "Show the version and exit.").required(false).repeatable(false));
    options.addOption(Poco::Util::Option("config", "c", "Read the configuration from FILE (default: etc/postern.properties).")
                          .required(false).repeatable(false).argument("FILE"));
    options.addOption(Poco::Util::Option("check", "t", "Validate the configuration, read the files and load the plugins it names, and exit (0 = valid).")
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
    } else if (name == "pidfile") {
        pidFile_ = value;
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
        // Read as .properties whatever its name (as posternctl does): POCO's
        // loadConfiguration() chooses a parser by the extension and refused "postern.conf".
        if (!file.empty()) config().add(new Poco::Util::PropertyFileConfiguration(file), PRIO_DEFAULT, false);
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
    help.setFooter(
        "Signals: SIGTERM/SIGINT/SIGQUIT turn /readyz to 503 (serving on for server.drain_delay while a balancer polls it), "
        "then stop accepting and let sessions finish within server.shutdown_grace; "
        "SIGHUP re-reads the TLS certificates and keys and the DKIM keys, and empties the authentication cache.");
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
    std::string error;
    bool transient = false;
    try {
        return serve();
    } catch (const TransientStartupError& e) {
        error = e.what();
        transient = true;
    } catch (const Poco::Exception& e) {
        error = e.displayText();
    } catch (const std::exception& e) {
        error = e.what();
    }
    serverLog().fatal(core::EventLine("startup.fail").add("transient", transient ? "yes" : "no").text("error", error).str());
    // --check is run by hand (and by the unit's ExecStartPre): its answer belongs on the
    // terminal too, whatever logging.* sends the log to (syslog when packaged).
    if (checkOnly_) std::cerr << "posternd: " << error << std::endl;
    return transient ? EXIT_TEMPFAIL : EXIT_CONFIG;
}

int PosternServer::serve() {
    static LoggingErrorHandler errorHandler;
    Poco::ErrorHandler::set(&errorHandler);

    const config::ServerConfig cfg = config::ServerConfig::load(config());
    if (checkOnly_) {
        policyd::PolicyDelegation::fromConfig(cfg.policy);  // policy.service / default_action (throws); Daemon builds it otherwise
        Poco::Net::initializeSSL();
        Daemon(daemonSettings(cfg)).checkFiles();
        Poco::Net::uninitializeSSL();
        std::cout << "configuration OK: " << cfg.listeners.size() << " listeners, " << cfg.backends.size()
                  << " auth backends" << std::endl;
        return EXIT_OK;
    }

    Daemon daemon(daemonSettings(cfg));  // from here on only module settings travel; no thread yet
    daemon.refuseRootWithoutUser();
    const sigset_t signals = blockDaemonSignals();  // before the first thread is started
    Poco::Net::initializeSSL();
    daemon.buildTls();
    daemon.buildAuth();
    daemon.buildCluster();
    daemon.buildAbuse();
    daemon.buildGrants();
    daemon.buildStorage();
    daemon.buildDkim();
    daemon.buildServices();
    daemon.registerGauges();
    daemon.startSweepers();
    daemon.bindListeners();
    daemon.dropPrivileges();  // ports bound, secrets read; before the first client is served
    daemon.startServing();
    runSignalLoop(daemon, signals);
    if (!daemon.drain(signals)) {
        // Sessions still run inside the daemon's objects: no destructor, no dlclose under them.
        // (POCO's console, file and syslog channels have written every line already; an
        // AsyncChannel in logging.* would lose its last lines here.)
        if (!pidFile_.empty()) std::remove(pidFile_.c_str());
        std::fflush(nullptr);
        std::_Exit(EXIT_OK);
    }
    Poco::Net::uninitializeSSL();
    return EXIT_OK;
}

}  // namespace postern::app
