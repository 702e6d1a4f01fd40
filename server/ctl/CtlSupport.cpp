// Shared plumbing of posternctl's configuration-driven commands.
#include "CtlSupport.h"
#include "core/Utf8.h"

#include <Poco/AutoPtr.h>
#include <Poco/Exception.h>
#include <Poco/File.h>
#include <Poco/Util/LayeredConfiguration.h>
#include <Poco/Util/MapConfiguration.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <algorithm>
#include <ostream>

namespace postern::ctl {

std::string Options::value(const std::string& name, const std::string& fallback) const {
    auto it = values.find(name);
    return it == values.end() || it->second.empty() ? fallback : it->second.back();
}

Options parseOptions(const std::vector<std::string>& args, const std::set<std::string>& valueOptions,
                     const std::set<std::string>& flagOptions) {
    Options o;
    std::set<std::string> withValue = valueOptions;
    withValue.insert({"--config", "--backend"});
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "-c") {  // short for --config
            if (i + 1 >= args.size()) {
                throw CtlError(ExitUsage, "-c needs a FILE");
            }
            o.configFile = args[++i];
            continue;
        }
        if (a == "-D") {
            if (i + 1 >= args.size()) {
                throw CtlError(ExitUsage, "-D needs key=value");
            }
            const std::string& kv = args[++i];
            auto eq = kv.find('=');
            if (eq == std::string::npos || eq == 0) {
                throw CtlError(ExitUsage, "-D needs key=value, got '" + kv + "'");
            }
            o.defines[kv.substr(0, eq)] = kv.substr(eq + 1);
            continue;
        }
        if (a.size() < 2 || a[0] != '-' || a == "-") {
            o.positional.push_back(a);
            continue;
        }
        if (a == "--") {
            o.positional.insert(o.positional.end(), args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
            break;
        }
        std::string name = a;
        std::string value;
        bool inlineValue = false;
        if (auto eq = a.find('='); eq != std::string::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
            inlineValue = true;
        }
        if (withValue.count(name)) {
            if (!inlineValue) {
                if (i + 1 >= args.size()) {
                    throw CtlError(ExitUsage, name + " needs a value");
                }
                value = args[++i];
            }
            if (name == "--config") {
                o.configFile = value;
            } else if (name == "--backend") {
                o.backend = value;
            } else {
                o.values[name].push_back(value);
            }
        } else if (flagOptions.count(name) && !inlineValue) {
            o.flags.insert(name);
        } else {
            throw CtlError(ExitUsage, "unknown option " + a);
        }
    }
    return o;
}

config::ServerConfig loadConfig(const Options& options) {
    try {
        if (!Poco::File(options.configFile).exists()) {
            throw CtlError(ExitConfig, "config file " + options.configFile + " not found (use --config FILE)");
        }
        Poco::AutoPtr<Poco::Util::LayeredConfiguration> layered = new Poco::Util::LayeredConfiguration;
        Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> file =
            new Poco::Util::PropertyFileConfiguration(options.configFile);
        layered->add(file, 0, false);
        Poco::AutoPtr<Poco::Util::MapConfiguration> overrides = new Poco::Util::MapConfiguration;
        for (const auto& [k, v] : options.defines) {
            overrides->setString(k, v);
        }
        layered->add(overrides, -100, false);  // lower number = consulted first: -D wins
        return config::ServerConfig::load(*layered);
    } catch (const CtlError&) {
        throw;
    } catch (const Poco::Exception& e) {
        throw CtlError(ExitConfig, options.configFile + ": " + e.displayText());
    } catch (const std::exception& e) {
        throw CtlError(ExitConfig, options.configFile + ": " + e.what());
    }
}

config::BackendConfig clusterDatabase(const config::ServerConfig& cfg, const std::string& what) {
    // Review finding: this fell back to the first postgres auth backend, a database posternd
    // never reads for this state: "grant revoke" said "no grant" while the IP kept relaying.
    if (!cfg.cluster.enabled()) throw CtlError(ExitConfig, what + " (cluster.conninfo is not set)");
    config::BackendConfig b;
    b.name = "cluster";
    b.plugin = "postgres";
    b.params["conninfo"] = cfg.cluster.conninfo;
    if (!cfg.cluster.passwordFile.empty()) b.params["password_file"] = cfg.cluster.passwordFile;
    return b;
}

const config::BackendConfig& chooseBackend(const config::ServerConfig& cfg, const Options& options,
                                           const std::vector<std::string>& plugins) {
    auto names = [&] {
        std::string s;
        for (const auto& p : plugins) {
            s += (s.empty() ? "" : " or ") + p;
        }
        return s;
    };
    if (!options.backend.empty()) {
        for (const auto& b : cfg.backends) {
            if (b.name == options.backend) {
                if (std::find(plugins.begin(), plugins.end(), b.plugin) == plugins.end()) {
                    throw CtlError(ExitConfig, "backend '" + b.name + "' uses plugin " + b.plugin +
                                                   "; this command needs " + names());
                }
                return b;
            }
        }
        throw CtlError(ExitConfig, "no backend '" + options.backend + "' in auth.backends of " + options.configFile);
    }
    for (const auto& p : plugins) {
        for (const auto& b : cfg.backends) {
            if (b.plugin == p) {
                return b;
            }
        }
    }
    throw CtlError(ExitConfig, "no " + names() + " backend in auth.backends of " + options.configFile +
                                   " (or name one with --backend)");
}

namespace {

bool isAtext(unsigned char c) {
    static const std::string specials = "!#$%&'*+/=?^_`{|}~-";
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || specials.find(static_cast<char>(c)) != std::string::npos;
}

bool isLdhDomain(const std::string& d) {
    if (d.empty() || d.size() > 253) {
        return false;
    }
    std::size_t start = 0;
    while (true) {
        auto dot = d.find('.', start);
        std::string label = d.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-' ||
            !std::all_of(label.begin(), label.end(), [](unsigned char c) {
                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
            })) {
            return false;
        }
        if (dot == std::string::npos) {
            return true;
        }
        start = dot + 1;
    }
}

}  // namespace

std::string domainOf(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : address.substr(at + 1);
}

std::string checkDomain(const std::string& domainIn) {
    std::string d = core::asciiLower(domainIn);
    if (!isLdhDomain(d)) {
        throw CtlError(ExitDataError, "malformed domain '" + domainIn + "' (letters, digits, '-' and dots)");
    }
    return d;
}

std::string checkAddress(const std::string& addressIn, const std::string& what) {
    std::string a = core::asciiLower(addressIn);
    auto at = a.find('@');
    if (at == std::string::npos || at == 0 || a.find('@', at + 1) != std::string::npos) {
        throw CtlError(ExitDataError, "malformed " + what + " '" + addressIn + "' (expected local@domain)");
    }
    std::string local = a.substr(0, at);
    bool localOk = local.size() <= 64 && local.front() != '.' && local.back() != '.' &&
                   local.find("..") == std::string::npos &&
                   std::all_of(local.begin(), local.end(), [](unsigned char c) { return isAtext(c) || c == '.'; });
    if (!localOk) {
        throw CtlError(ExitDataError, "malformed " + what + " '" + addressIn +
                                          "' (local part: letters, digits, dots and !#$%&'*+/=?^_`{|}~-)");
    }
    if (!isLdhDomain(a.substr(at + 1))) {
        throw CtlError(ExitDataError, "malformed " + what + " '" + addressIn + "' (bad domain)");
    }
    return a;
}

Poco::JSON::Object::Ptr jsonObject() {
    return new Poco::JSON::Object(Poco::JSON_PRESERVE_KEY_ORDER);
}

Poco::JSON::Array::Ptr jsonArray(const std::vector<std::string>& values) {
    Poco::JSON::Array::Ptr a = new Poco::JSON::Array;
    for (const auto& v : values) {
        a->add(v);
    }
    return a;
}

void writeJson(std::ostream& out, const Poco::Dynamic::Var& document) {
    if (document.type() == typeid(Poco::JSON::Array::Ptr)) {
        document.extract<Poco::JSON::Array::Ptr>()->stringify(out);
    } else {
        document.extract<Poco::JSON::Object::Ptr>()->stringify(out);
    }
    out << "\n";
}

void expectPositional(const Options& options, std::size_t min, std::size_t max, const Command& command) {
    if (options.positional.size() < min || options.positional.size() > max) {
        throw CtlError(ExitUsage, "usage: posternctl " + std::string(command.name) + " " + std::string(command.usage));
    }
}

int guarded(CommandContext& c, const char* name, const std::function<int()>& body) {
    try {
        return body();
    } catch (const CtlError& e) {
        c.err << "posternctl " << name << ": " << e.what() << "\n";
        return e.code();
    } catch (const std::exception& e) {
        c.err << "posternctl " << name << ": " << e.what() << "\n";
        return ExitSoftware;
    }
}

}  // namespace postern::ctl
