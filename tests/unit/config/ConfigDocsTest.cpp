// Every key of the one config table is documented in etc/postern.properties (set or
// shown commented with its default), and every key set there is a known key: the
// default file cannot drift from the code.
#include "config/ConfigSchema.h"
#include "config/ServerConfig.h"

#include <Poco/AutoPtr.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <boost/test/unit_test.hpp>

#include <fstream>
#include <sstream>

using namespace postern::config;

namespace {
std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
}  // namespace

BOOST_AUTO_TEST_SUITE(config_docs)

BOOST_AUTO_TEST_CASE(every_key_is_documented_in_etc) {
    const std::string text = readFile(std::string(POSTERN_SOURCE_DIR) + "/etc/postern.properties");
    BOOST_REQUIRE(!text.empty());
    for (const auto& k : keyTable()) {
        std::string name(k.name);
        auto star = name.find('*');
        if (star != std::string::npos) {
            // Patterns: the leaf must be mentioned (e.g. "proxy_trusted" for listener.*.proxy_trusted).
            std::string leaf = name.substr(name.rfind('.') + 1);
            if (leaf == "*") leaf = name.substr(0, star);
            BOOST_TEST_INFO("pattern key " << name);
            BOOST_TEST(text.find(leaf) != std::string::npos);
            continue;
        }
        BOOST_TEST_INFO("key " << name);
        BOOST_TEST(text.find(name + " =") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(default_file_loads_and_validates) {
    Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> conf =
        new Poco::Util::PropertyFileConfiguration(std::string(POSTERN_SOURCE_DIR) + "/etc/postern.properties");
    ServerConfig c = ServerConfig::load(*conf);
    BOOST_TEST(c.listeners.size() == 5u);
    BOOST_TEST(c.smtp.maxMessageSize == 25u * 1024 * 1024);
    Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> prod =
        new Poco::Util::PropertyFileConfiguration(std::string(POSTERN_SOURCE_DIR) + "/etc/postern-production.properties");
    BOOST_CHECK_NO_THROW(ServerConfig::load(*prod));
}

BOOST_AUTO_TEST_CASE(unknown_and_bad_keys_are_named) {
    Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> conf =
        new Poco::Util::PropertyFileConfiguration(std::string(POSTERN_SOURCE_DIR) + "/etc/postern.properties");
    conf->setString("smtp.max_recipeints", "5");
    conf->setString("smtp.command_timeout", "5 parsecs");
    try {
        ServerConfig::load(*conf);
        BOOST_FAIL("expected an error");
    } catch (const std::runtime_error& e) {
        std::string m = e.what();
        BOOST_TEST(m.find("smtp.max_recipeints: unknown key") != std::string::npos);
        BOOST_TEST(m.find("smtp.command_timeout") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(units_parse) {
    BOOST_TEST(parseDurationMs("300s") == 300000);
    BOOST_TEST(parseDurationMs("10m") == 600000);
    BOOST_TEST(parseDurationMs("250ms") == 250);
    BOOST_TEST(parseSize("25M") == 25ull * 1024 * 1024);
    BOOST_CHECK_THROW(parseSize("12Q"), std::invalid_argument);
    BOOST_TEST(parseBool("yes"));
}

BOOST_AUTO_TEST_SUITE_END()
