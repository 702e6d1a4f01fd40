// Entry points of postern-auth-passwd-file.so: the ABI version and the descriptor.
// Nothing may throw across this boundary.
#include "PasswdFileBackend.h"

#include <new>

namespace {

using postern::plugins::api::Backend;
using postern::plugins::passwdfile::PasswdFileBackend;
using postern::plugins::passwdfile::PasswdFileConfig;

Backend* create(const std::map<std::string, std::string>& config, std::string& error) noexcept {
    try {
        return new PasswdFileBackend(PasswdFileConfig::fromMap(config));
    } catch (const std::exception& e) {
        error = std::string("passwd-file: ") + e.what();
    } catch (...) {
        error = "passwd-file: unexpected error";
    }
    return nullptr;
}

void destroy(Backend* backend) noexcept {
    delete backend;
}

}  // namespace

POSTERN_PLUGIN_EXPORT((postern::plugins::api::Descriptor{"passwd-file", "1.0.0", &create, &destroy}))
