// Entry points of postern-auth-ldap.so: the C table of api/postern_plugin.h around LdapBackend
// (plugins/ldap/lib; api/PluginAdapter.h). Read-only: the write entry points answer
// UNSUPPORTED. Nothing may throw across this boundary.
#include "LdapBackend.h"
#include "api/PluginAdapter.h"

namespace {

using postern::plugins::ldap::LdapBackend;
using postern::plugins::ldap::LdapConfig;

std::unique_ptr<postern::plugins::api::Backend> makeBackend(const std::map<std::string, std::string>& config,
                                                            std::uint32_t) {
    return postern::plugins::api::adapter::namedErrors(
        "ldap", [&] { return std::make_unique<LdapBackend>(LdapConfig::fromMap(config)); });
}

}  // namespace

POSTERN_PLUGIN_EXPORT("ldap", "1.1.0", makeBackend)
