// smtp.* limits: the shipped values load, and values that would refuse all mail (a 0 that
// Postfix reads as "no limit" for some keys) are refused at load, naming the key.
#include "config/ServerConfig.h"

#include "unit/config/ShippedConfig.h"

#include <boost/test/unit_test.hpp>

#include <sys/socket.h>

using namespace postern::config;

namespace {
using postern::test::loadErrorWith;
using postern::test::shippedConfig;
}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_limits_config)

BOOST_AUTO_TEST_CASE(shipped_values) {
    auto conf = shippedConfig();
    ServerConfig c = ServerConfig::load(*conf);
    BOOST_TEST(c.smtp.maxHops == 50u);
    BOOST_TEST(c.smtp.maxErrors == 20);
    BOOST_TEST(c.smtp.maxRecipients == 100u);
    conf->setString("smtp.max_hops", "30");
    BOOST_TEST(ServerConfig::load(*conf).smtp.maxHops == 30u);
}

BOOST_AUTO_TEST_CASE(values_that_refuse_all_mail_name_the_key) {
    const std::pair<const char*, const char*> bad[] = {
        {"smtp.max_message_size", "0"}, {"smtp.max_recipients", "0"}, {"smtp.max_recipients", "-1"},
        {"smtp.max_errors", "0"},       {"smtp.max_header_size", "0"}, {"smtp.max_hops", "0"},
    };
    for (const auto& [key, value] : bad) {
        const std::string e = loadErrorWith(key, value);
        BOOST_TEST(e.find(key) != std::string::npos, key << " = " << value << ": " << e);
    }
}

// Session timing keys bounded at load (review): a ticket key living for weeks undoes the
// 24-hour bound on resumable secrets; a login deadline below a second cannot be met.
BOOST_AUTO_TEST_CASE(tls_ticket_rotation_and_pop3_login_timeout_bounds) {
    const std::pair<const char*, const char*> bad[] = {
        {"tls.ticket_key_rotation", "25h"}, {"tls.ticket_key_rotation", "30d"}, {"pop3.login_timeout", "500ms"},
    };
    for (const auto& [key, value] : bad) {
        const std::string e = loadErrorWith(key, value);
        BOOST_TEST(e.find(key) != std::string::npos, key << " = " << value << ": " << e);
    }
    auto conf = shippedConfig();
    ServerConfig c = ServerConfig::load(*conf);
    BOOST_TEST(c.pop3.loginTimeout.count() == 180000);
    BOOST_TEST(c.tls.ticketKeyRotation.count() == std::chrono::milliseconds(std::chrono::hours(12)).count());
    conf->setString("tls.ticket_key_rotation", "24h");
    conf->setString("pop3.login_timeout", "0");
    c = ServerConfig::load(*conf);
    BOOST_TEST(c.pop3.loginTimeout.count() == 0);
}

// Bind addresses are IP literals, checked at load (a host name was resolved only at bind:
// --check passed it, and a boot before DNS failed with 78, never retried by systemd).
BOOST_AUTO_TEST_CASE(bind_addresses_are_ip_literals) {
    for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"listener.mx.address", "127.0.0.300"}, {"listener.pop3.address", "mail.example.net"},
             {"health.address", "no-such-host.invalid"}}) {
        const std::string e = loadErrorWith(key.c_str(), value.c_str());
        BOOST_TEST(e.find(key + ": '" + value + "' is not an IPv4 or IPv6 address") != std::string::npos, e);
    }
    auto conf = shippedConfig();
    conf->setString("listener.mx.address", "::");
    conf->setString("health.address", "0.0.0.0");
    BOOST_CHECK_NO_THROW(ServerConfig::load(*conf));
    conf->setString("listener.mx.address", "localhost");     // /etc/hosts, as before the check
    conf->setString("listener.pop3.address", "fe80::1%lo");  // an IPv6 zone
    conf->setString("health.port", "0");                     // off: its address is not used
    conf->setString("health.address", "not-used.invalid");
    BOOST_CHECK_NO_THROW(ServerConfig::load(*conf));
}

// The delivery resolver takes an IPv4 server only (res_nquery): anything else is refused at
// load, not found out at the first lookup.
BOOST_AUTO_TEST_CASE(delivery_dns_server_is_an_ipv4_address_and_port) {
    for (const char* bad : {"[::1]:53", "localhost:53", "resolver.example.net:53"}) {
        const std::string e = loadErrorWith("delivery.dns_server", bad);
        BOOST_TEST(e.find("delivery.dns_server: must be an IPv4 address and port") != std::string::npos, e);
    }
    auto conf = shippedConfig();
    conf->setString("delivery.dns_server", "127.0.0.1:5353");
    BOOST_TEST(ServerConfig::load(*conf).delivery.dnsServer == "127.0.0.1:5353");
}

// The family a listener binds as, from the same parser as the clash check (the bind used
// to guess it from a ':' in the text).
BOOST_AUTO_TEST_CASE(bind_family_is_the_clash_checks_parse) {
    using postern::config::bindFamily;
    BOOST_TEST(bindFamily("127.0.0.1") == AF_INET);
    BOOST_TEST(bindFamily("localhost") == AF_INET);
    BOOST_TEST(bindFamily("0.0.0.0") == AF_INET);
    BOOST_TEST(bindFamily("::") == AF_INET6);
    BOOST_TEST(bindFamily("fe80::1%lo") == AF_INET6);
    BOOST_TEST(bindFamily("mail.example.net") == 0);
}

// Limits that were constants (review finding: the listen backlog, the login entries kept
// through a store outage) are keys with their defaults; out-of-range values name the key.
BOOST_AUTO_TEST_CASE(listen_backlog_drain_delay_and_pending_logins_are_keys) {
    auto conf = shippedConfig();
    ServerConfig c = ServerConfig::load(*conf);
    for (const auto& l : c.listeners) BOOST_TEST(l.backlog == 1024);
    BOOST_TEST(c.accountSecurity.maxPending == 100000);
    BOOST_TEST(c.drainDelay.count() == 8000);
    conf->setString("listener.mx.backlog", "4096");
    conf->setString("account_security.max_pending", "5");
    conf->setString("server.drain_delay", "0");
    c = ServerConfig::load(*conf);
    BOOST_TEST(c.listeners.front().name == "mx");
    BOOST_TEST(c.listeners.front().backlog == 4096);
    BOOST_TEST(c.accountSecurity.maxPending == 5);
    BOOST_TEST(c.drainDelay.count() == 0);
    const std::pair<const char*, const char*> bad[] = {
        {"listener.mx.backlog", "0"}, {"listener.pop3.backlog", "70000"}, {"account_security.max_pending", "0"},
    };
    for (const auto& [key, value] : bad) {
        const std::string e = loadErrorWith(key, value);
        BOOST_TEST(e.find(key) != std::string::npos, key << " = " << value << ": " << e);
    }
}

BOOST_AUTO_TEST_SUITE_END()
