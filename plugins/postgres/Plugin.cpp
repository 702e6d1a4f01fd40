// Entry points of postern-auth-postgres.so: the C table of api/postern_plugin.h around
// PostgresBackend (api/PluginAdapter.h). Nothing may throw across this boundary.
#include "PostgresBackend.h"
#include "api/PluginAdapter.h"

namespace {

using postern::plugins::postgres::PostgresBackend;
using postern::plugins::postgres::PostgresConfig;

std::unique_ptr<postern::plugins::api::Backend> makeBackend(const std::map<std::string, std::string>& config,
                                                            std::uint32_t) {
    return postern::plugins::api::adapter::namedErrors(
        "postgres", [&] { return std::make_unique<PostgresBackend>(PostgresConfig::fromMap(config)); });
}

}  // namespace

POSTERN_PLUGIN_EXPORT("postgres", "1.1.0", makeBackend)
