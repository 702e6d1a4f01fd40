// The shipped etc/postern.properties as a configuration to change in a test, and the error
// ServerConfig::load gives for one ("" when it loads).
#pragma once

#include "config/ServerConfig.h"

#include <Poco/AutoPtr.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <stdexcept>
#include <string>

namespace postern::test {

inline Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> shippedConfig() {
    return new Poco::Util::PropertyFileConfiguration(std::string(POSTERN_SOURCE_DIR) + "/etc/postern.properties");
}

inline std::string configLoadError(Poco::Util::AbstractConfiguration& c) {
    try {
        config::ServerConfig::load(c);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

// The error of the shipped configuration with `key` set to `value` ("" when it loads).
inline std::string loadErrorWith(const std::string& key, const std::string& value) {
    auto conf = shippedConfig();
    conf->setString(key, value);
    return configLoadError(*conf);
}

}  // namespace postern::test
