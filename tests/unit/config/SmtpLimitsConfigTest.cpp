// smtp.* limits: the shipped values load, and values that would refuse all mail (a 0 that
// Postfix reads as "no limit" for some keys) are refused at load, naming the key.
#include "config/ServerConfig.h"

#include "unit/config/ShippedConfig.h"

#include <boost/test/unit_test.hpp>

using namespace postern::config;

namespace {
using postern::test::configLoadError;
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
        auto conf = shippedConfig();
        conf->setString(key, value);
        std::string e = configLoadError(*conf);
        BOOST_TEST_INFO(key << " = " << value << ": " << e);
        BOOST_TEST(e.find(key) != std::string::npos);
    }
}

BOOST_AUTO_TEST_SUITE_END()
