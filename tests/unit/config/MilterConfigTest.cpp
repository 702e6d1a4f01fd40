// milter.* and listener.<name>.milters: defaults from the key table, the per-listener
// override (set = override, "none" = no milters), bad values refused at load naming the key.
#include "config/ServerConfig.h"

#include "unit/config/ShippedConfig.h"

#include <boost/test/unit_test.hpp>

using namespace postern::config;

namespace {
using postern::test::loadErrorWith;
using postern::test::shippedConfig;
}  // namespace

BOOST_AUTO_TEST_SUITE(milter_config)

BOOST_AUTO_TEST_CASE(defaults_and_overrides) {
    auto conf = shippedConfig();
    ServerConfig c = ServerConfig::load(*conf);
    BOOST_TEST(c.milter.milters.empty());
    BOOST_TEST(c.milter.perListener.empty());
    BOOST_TEST(c.milter.connectTimeout.count() == 30000);
    BOOST_TEST(c.milter.commandTimeout.count() == 30000);
    BOOST_TEST(c.milter.contentTimeout.count() == 300000);
    BOOST_TEST(c.milter.defaultAction == "tempfail");
    BOOST_TEST(c.milter.protocol == 6);
    conf->setString("milter.smtpd_milters", "inet:127.0.0.1:11332, unix:/run/opendkim.sock");
    conf->setString("listener.mx.milters", "none");
    conf->setString("listener.submission.milters", "inet:[::1]:8891");
    c = ServerConfig::load(*conf);
    BOOST_TEST(c.milter.milters == (std::vector<std::string>{"inet:127.0.0.1:11332", "unix:/run/opendkim.sock"}));
    BOOST_TEST(c.milter.perListener.at("mx").empty());
    BOOST_TEST(c.milter.perListener.at("submission") == std::vector<std::string>{"inet:[::1]:8891"});
    BOOST_TEST(!c.milter.perListener.count("pop3"));
}

BOOST_AUTO_TEST_CASE(bad_values_name_the_key) {
    const std::pair<const char*, const char*> bad[] = {
        {"milter.smtpd_milters", "tcp:host:1"},
        {"listener.mx.milters", "host:1"},
        {"milter.default_action", "discard"},
        {"milter.protocol", "7"},
        {"milter.command_timeout", "0s"},
    };
    for (const auto& [key, value] : bad) {
        const std::string e = loadErrorWith(key, value);
        BOOST_TEST(e.find(key) != std::string::npos, key << " = " << value << ": " << e);
    }
}

BOOST_AUTO_TEST_SUITE_END()
