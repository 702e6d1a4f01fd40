// Walks the one key table: every key the daemon accepts must reach the settings of at least
// one module (a key that is loaded but never copied into a module's Settings would silently
// do nothing). And a bad value is refused once, at load, naming the key.
#include "app/ModuleSettings.h"
#include "config/ConfigSchema.h"
#include "config/ServerConfig.h"
#include "core/Duration.h"

#include <Poco/AutoPtr.h>
#include <Poco/Util/MapConfiguration.h>

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

using namespace postern;
using config::KeyDef;
using config::ValueKind;

namespace {

using Values = std::vector<std::pair<std::string, std::string>>;

// Keys the daemon does not use, with the reason. Keep this list short.
// (auth.default_scheme is no longer one: posternd's rehash on login reads it too.)
const std::map<std::string, std::string> Exempt = {};

// The smallest valid configuration with every pattern expanded once: listener "mx", auth
// backend "local" (the default auth.backends), domain "example.org". TLS files are set (paths
// only: load() does not open them) so listener TLS modes are valid values.
const Values Base = {
    {"listeners", "mx"},
    {"listener.mx.port", "2525"},
    {"listener.mx.proxy_trusted", "198.51.100.0/24"},
    {"tls.cert_file", "/nonexistent/cert.pem"},
    {"tls.key_file", "/nonexistent/key.pem"},
};

// Alternative values where the generic rule below would not give a valid one (or a
// companion key is needed).
const std::map<std::string, Values> Special = {
    {"listeners", {{"listeners", "mx, second"}, {"listener.second.port", "2526"}}},
    {"auth.backends", {{"auth.backends", "local, other"}}},
    {"auth.backend.*.plugin", {{"auth.backend.local.plugin", "ldap"}}},
    {"auth.backend.*.domains", {{"auth.backend.local.domains", "example.org"}}},
    {"listener.*.address", {{"listener.mx.address", "127.0.0.2"}}},
    {"health.address", {{"health.address", "127.0.0.2"}}},
    {"tls.ciphers", {{"tls.ciphers", "ECDHE-RSA-AES128-GCM-SHA256"}}},
    {"tls.ciphersuites", {{"tls.ciphersuites", "TLS_AES_128_GCM_SHA256"}}},
    {"tls.groups", {{"tls.groups", "X25519"}}},
    {"tls.ecdsa_cert_file", {{"tls.ecdsa_cert_file", "/nonexistent/ec.pem"}, {"tls.ecdsa_key_file", "/nonexistent/ec.key"}}},
    {"tls.ecdsa_key_file", {{"tls.ecdsa_key_file", "/nonexistent/ec.key"}, {"tls.ecdsa_cert_file", "/nonexistent/ec.pem"}}},
    {"policy.service", {{"policy.service", "inet:127.0.0.1:10040"}}},
    {"policy.roles", {{"policy.roles", "mx"}}},
    {"smtp.postmaster_address", {{"smtp.postmaster_address", "root@example.org"}}},
    {"smtp.abuse_address", {{"smtp.abuse_address", "abuse-desk@example.org"}}},
    {"pop_before_smtp.ipv6_prefix", {{"pop_before_smtp.ipv6_prefix", "64"}}},
    {"cluster.conninfo", {{"cluster.conninfo", "host=db.example.org dbname=postern"}}},
    {"delivery.retry_schedule", {{"delivery.retry_schedule", "2m, 10m"}}},
    {"delivery.dns_server", {{"delivery.dns_server", "127.0.0.1:53"}}},
    {"delivery.relayhost", {{"delivery.relayhost", "relay.example.org:587"}}},
    {"delivery.transport.*", {{"delivery.transport.example.org", "mx.example.org:2525"}}},
    {"dkim.keys_in_database", {{"dkim.keys_in_database", "true"}, {"cluster.conninfo", "host=db.example.org dbname=postern"}}},
    {"milter.smtpd_milters", {{"milter.smtpd_milters", "inet:127.0.0.1:11332"}}},
    {"listener.*.milters", {{"listener.mx.milters", "unix:/run/milter.sock"}}},
    {"milter.protocol", {{"milter.protocol", "5"}}},
};

std::string concrete(std::string_view pattern) {
    std::string k(pattern);
    auto star = k.find('*');
    if (star == std::string::npos) return k;
    if (k.rfind("listener.*", 0) == 0) return k.replace(star, 1, "mx");
    if (k.rfind("auth.backend.*", 0) == 0) return k.replace(star, 1, "local");
    return k.replace(star, 1, "example.org");  // trailing ".*": a domain
}

std::string baseValue(const KeyDef& def, const std::string& key) {
    for (const auto& [k, v] : Base)
        if (k == key) return v;
    return std::string(def.defaultValue);
}

// A valid value different from `base`, by kind.
Values alternative(const KeyDef& def, const std::string& key) {
    if (auto it = Special.find(std::string(def.name)); it != Special.end()) return it->second;
    const std::string base = baseValue(def, key);
    switch (def.kind) {
    case ValueKind::Bool: return {{key, config::parseBool(base) ? "false" : "true"}};
    case ValueKind::Integer: return {{key, std::to_string(std::stoll(base) + 1)}};
    case ValueKind::Size: return {{key, std::to_string(config::parseSize(base) + 1024)}};
    case ValueKind::Duration: return {{key, std::to_string(core::parseDuration(base).count() + 1000) + "ms"}};
    case ValueKind::Enum: {
        std::string_view choices = def.choices;
        for (std::size_t start = 0; start <= choices.size();) {
            auto end = choices.find('|', start);
            if (end == std::string_view::npos) end = choices.size();
            std::string choice(choices.substr(start, end - start));
            if (choice != base) return {{key, choice}};
            start = end + 1;
        }
        break;
    }
    case ValueKind::List:
        if (key.find("allow_networks") != std::string::npos || key.find("proxy_trusted") != std::string::npos ||
            key.find("exclude_networks") != std::string::npos)
            return {{key, "192.0.2.0/24"}};
        break;
    case ValueKind::Path: return {{key, "/nonexistent/other/" + key}};
    case ValueKind::String: return {{key, base.empty() ? "alt.example.org" : base + "-alt"}};
    }
    BOOST_FAIL("no alternative value for " << key << ": add one to Special");
    return {};
}

config::ServerConfig load(const Values& extra = {}) {
    Poco::AutoPtr<Poco::Util::MapConfiguration> conf = new Poco::Util::MapConfiguration;
    for (const auto& [k, v] : Base) conf->setString(k, v);
    for (const auto& [k, v] : extra) conf->setString(k, v);
    return config::ServerConfig::load(*conf);
}

// The error text of a refused configuration ("" if it loads).
std::string loadError(const Values& extra) {
    try {
        load(extra);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(module_settings)

BOOST_AUTO_TEST_CASE(every_key_reaches_a_module) {
    const app::DaemonSettings defaults = app::daemonSettings(load());
    BOOST_TEST((app::daemonSettings(load()) == defaults));  // pure: the same config, the same settings
    std::size_t walked = 0;
    for (const auto& def : config::keyTable()) {
        if (Exempt.count(std::string(def.name))) continue;
        const std::string key = concrete(def.name);
        const Values alt = alternative(def, key);
        BOOST_TEST_CONTEXT("key " << def.name << " = " << alt.front().second) {
            config::ServerConfig changed;
            BOOST_REQUIRE_NO_THROW(changed = load(alt));
            BOOST_TEST(!(app::daemonSettings(changed) == defaults),
                       "loaded, but no module's settings changed: the value never reaches a module");
        }
        ++walked;
    }
    BOOST_TEST(walked + Exempt.size() == config::keyTable().size());
    for (const auto& [name, why] : Exempt) {
        BOOST_TEST_INFO("exempt key " << name << " (" << why << ")");
        BOOST_TEST(config::findKey(concrete(name)) != nullptr);  // no stale exemptions
    }
}

// The daemon's settings are the module structs themselves: spot-check a few by value, so a
// wrong copy (not just a missing one) is caught too.
BOOST_AUTO_TEST_CASE(values_arrive_converted) {
    const auto s = app::daemonSettings(load({{"auth.penalty.max_failures_ip", "7"},
                                             {"tls.session_lifetime", "90s"},
                                             {"listener.mx.max_connections_per_ip", "3"},
                                             {"connections.rate_per_ip", "9"},
                                             {"pop_before_smtp.lifetime", "120s"},
                                             {"cluster.grant_retry_queue", "5"},
                                             {"smtp.command_timeout", "42s"},
                                             {"listener.mx.tls", "starttls"}}));
    BOOST_TEST(s.penalty.maxFailuresIp == 7u);
    BOOST_TEST(s.tls.sessionLifetime.count() == 90);
    BOOST_TEST(s.gate.listeners.at("mx").maxConcurrentPerIp == 3u);
    BOOST_TEST(s.gate.listeners.at("mx").maxPerMinutePerIp == 9u);  // 0 on the listener: the global value
    BOOST_TEST(s.grants.enabled);
    BOOST_TEST(s.grants.pg.lifetime.count() == 120);
    BOOST_TEST(s.listeners.at(0).pop3.grantLifetime.count() == 120);
    BOOST_TEST(s.grants.writeBehind.queueLimit == 5u);
    BOOST_TEST(s.listeners.at(0).timeouts.smtpCommand.count() == 42000);
    BOOST_TEST(s.listeners.at(0).smtp.tlsAvailable);
    BOOST_TEST(s.cluster.connect.password.empty());  // read from the file by the builder, never here
    const auto off = app::daemonSettings(load({{"pop_before_smtp.lifetime", "0"}}));
    BOOST_TEST(!off.grants.enabled);
    // Maildir names carry the writer's own name, never server.hostname (every node of a
    // cluster shares it): cluster.node_id, else the machine's host name.
    BOOST_TEST(app::daemonSettings(load({{"cluster.node_id", "node-7"}})).store.hostname == "node-7");
    char host[256] = {};
    BOOST_REQUIRE(::gethostname(host, sizeof host - 1) == 0);
    BOOST_TEST(app::daemonSettings(load({{"server.hostname", "mail.example.net"}})).store.hostname == host);
}

// One bad value of each kind: load() refuses it and names the key, once. Nothing later
// (module constructors) is left to find it.
BOOST_AUTO_TEST_CASE(bad_values_are_refused_at_load_naming_the_key) {
    const Values bad = {
        {"pop_before_smtp.lifetime", "500ms"},        // grants count whole seconds
        {"smtp.command_timeout", "soon"},             // duration
        {"cluster.lock_lease", "ten"},                // duration with a range check behind it
        {"auth.penalty.window", "0"},                 // must be positive
        {"auth.penalty.max_delay", "500ms"},          // below base_delay (1s)
        {"smtp.max_recipients", "12x"},               // integer
        {"smtp.max_message_size", "5Q"},              // size
        {"smtp.allow_plaintext_auth", "maybe"},       // bool
        {"tls.min_version", "1.1"},                   // enum
        {"connections.allow_networks", "300.1.2.3/8"},// network list
        {"limits.ipv6_prefix", "129"},                // prefix length
        {"listener.mx.port", "70000"},                // port range
        {"delivery.relayhost", "no-port"},            // host:port
        {"health.ready_timeout", "0s"},               // must be positive
    };
    for (const auto& [key, value] : bad) {
        BOOST_TEST_CONTEXT(key << " = " << value) {
            const std::string err = loadError({{key, value}});
            BOOST_TEST(!err.empty(), "accepted at load");
            BOOST_TEST(count(err, "\n  " + key) == 1u, err);
        }
    }
    BOOST_TEST(loadError({}).empty());
}

BOOST_AUTO_TEST_SUITE_END()
