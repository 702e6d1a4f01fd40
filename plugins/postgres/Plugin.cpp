// Entry points of postern-auth-postgres.so: the ABI version and the descriptor.
// Nothing may throw across this boundary.
#include "PostgresBackend.h"

#include <new>

namespace {

using postern::plugins::api::Backend;
using postern::plugins::postgres::PostgresBackend;
using postern::plugins::postgres::PostgresConfig;

Backend* create(const std::map<std::string, std::string>& config, std::string& error) noexcept {
    try {
        return new PostgresBackend(PostgresConfig::fromMap(config));
    } catch (const std::exception& e) {
        error = std::string("postgres: ") + e.what();
    } catch (...) {
        error = "postgres: unexpected error";
    }
    return nullptr;
}

void destroy(Backend* backend) noexcept {
    delete backend;
}

}  // namespace

POSTERN_PLUGIN_EXPORT((postern::plugins::api::Descriptor{"postgres", "1.0.0", &create, &destroy}))
