// smtp.* limits: the shipped values load, and values that would refuse all mail (a 0 that
// Postfix reads as "no limit" for some keys) are refused at load, naming the key.
#include "config/ServerConfig.h"

#include <Poco/AutoPtr.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <boost/test/unit_test.hpp>

using namespace postern::config;

namespace {
Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> shipped() {
    return new Poco::Util::PropertyFileConfiguration(std::string(POSTERN_SOURCE_DIR) + "/etc/postern.properties");
}
std::string loadError(Poco::Util::AbstractConfiguration& c) {
    try {
        ServerConfig::load(c);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_limits_config)

BOOST_AUTO_TEST_CASE(shipped_values) {
    auto conf = shipped();
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
        auto conf = shipped();
        conf->setString(key, value);
        std::string e = loadError(*conf);
        BOOST_TEST_INFO(key << " = " << value << ": " << e);
        BOOST_TEST(e.find(key) != std::string::npos);
    }
}

BOOST_AUTO_TEST_SUITE_END()
