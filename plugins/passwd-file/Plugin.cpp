// Entry points of postern-auth-passwd-file.so: the C table of api/postern_plugin.h around
// PasswdFileBackend (api/PluginAdapter.h). Nothing may throw across this boundary.
#include "PasswdFileBackend.h"
#include "api/PluginAdapter.h"

namespace {

using postern::plugins::passwdfile::PasswdFileBackend;
using postern::plugins::passwdfile::PasswdFileConfig;

std::unique_ptr<postern::plugins::api::Backend> makeBackend(const std::map<std::string, std::string>& config,
                                                            std::uint32_t flags) {
    return postern::plugins::api::adapter::namedErrors("passwd-file", [&] {
        return std::make_unique<PasswdFileBackend>(PasswdFileConfig::fromMap(config),
                                                   (flags & POSTERN_CREATE_ADMIN) != 0);
    });
}

}  // namespace

POSTERN_PLUGIN_EXPORT("passwd-file", "1.1.0", makeBackend)
