// Shared plumbing of posternctl's configuration-driven commands: option parsing, loading the
// daemon's config, choosing a backend, validating addresses, and the error that carries an
// exit code.
#pragma once

#include "Command.h"
#include "Layout.h"
#include "config/ServerConfig.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace postern::ctl {

// Thrown by command code; run() prints "posternctl <command>: <message>" and exits with code.
class CtlError : public std::runtime_error {
public:
    CtlError(int code, const std::string& message) : std::runtime_error(message), code_(code) {}
    int code() const { return code_; }

private:
    int code_;
};

// Options every configuration-driven command takes, plus the command's own.
// "--name value" and "--name=value"; flags take no value; "-D key=value" overrides a config key;
// "-c FILE" is --config. posternctl's main() moves global options given before the command
// word(s) in front of the command's arguments, so they land here either way.
struct Options {
    std::string configFile = layout().configFile;  // etc/postern.properties in the work tree
    std::string backend;                          // --backend NAME ("" = choose)
    std::map<std::string, std::string> defines;   // -D key=value
    std::map<std::string, std::vector<std::string>> values;  // command options with a value
    std::set<std::string> flags;                  // command flags present
    std::vector<std::string> positional;

    bool has(const std::string& flag) const { return flags.count(flag) != 0; }
    std::string value(const std::string& name, const std::string& fallback = "") const;
};

// Parses args; valueOptions/flagOptions are the command's own ("--mailbox", "--force").
// Throws CtlError(ExitUsage) on an unknown option or a missing value.
Options parseOptions(const std::vector<std::string>& args, const std::set<std::string>& valueOptions,
                     const std::set<std::string>& flagOptions);

// Loads and validates the config file (+ -D overrides) exactly as posternd does.
// Throws CtlError(ExitConfig).
config::ServerConfig loadConfig(const Options& options);

// The backend instance to administer: --backend NAME if given, else the first whose plugin is
// one of `plugins`, in that order of preference. Throws CtlError(ExitConfig).
// The database holding the cluster's shared state (grants, leases, counters, DKIM keys):
// cluster.conninfo's (a pseudo-backend named "cluster"), whatever --backend says. Without
// cluster.conninfo posternd keeps that state in memory or in files, never in an auth
// backend's database: CtlError(ExitConfig) naming `what` and where it is instead.
config::BackendConfig clusterDatabase(const config::ServerConfig& cfg, const std::string& what);

const config::BackendConfig& chooseBackend(const config::ServerConfig& cfg, const Options& options,
                                           const std::vector<std::string>& plugins);

// Lower-cases and checks "local@domain": local part of RFC 5322 atext and dots (no leading,
// trailing or double dot, <= 64), domain of LDH labels (<= 253), no ':' or ',' (passwd-file
// and alias-list separators). Throws CtlError(ExitDataError) naming what is wrong.
std::string checkAddress(const std::string& address, const std::string& what = "address");
std::string checkDomain(const std::string& domain);
std::string domainOf(const std::string& address);

// Wraps a command body: CtlError -> its code, other exceptions -> ExitSoftware, each with one
// line "posternctl <name>: <message>" on err.
int guarded(CommandContext& context, const char* name, const std::function<int()>& body);

// Machine-readable output (--json): one JSON document and a newline on out. Objects keep
// their keys in insertion order.
Poco::JSON::Object::Ptr jsonObject();
void writeJson(std::ostream& out, const Poco::Dynamic::Var& document);
Poco::JSON::Array::Ptr jsonArray(const std::vector<std::string>& values);

// Expects min..max positional arguments; otherwise CtlError(ExitUsage) with the usage.
void expectPositional(const Options& options, std::size_t min, std::size_t max, const Command& command);

}  // namespace postern::ctl
