// Entry points of postern-auth-ldap.so: the ABI version and the descriptor. The backend
// lives in the postern_ldap library (plugins/ldap/lib). Nothing may throw across this boundary.
#include "LdapBackend.h"

#include <new>

namespace {

using postern::plugins::api::Backend;
using postern::plugins::ldap::LdapBackend;
using postern::plugins::ldap::LdapConfig;

Backend* create(const std::map<std::string, std::string>& config, std::string& error) noexcept {
    try {
        return new LdapBackend(LdapConfig::fromMap(config));
    } catch (const std::exception& e) {
        error = std::string("ldap: ") + e.what();
    } catch (...) {
        error = "ldap: unexpected error";
    }
    return nullptr;
}

void destroy(Backend* backend) noexcept {
    delete backend;
}

}  // namespace

POSTERN_PLUGIN_EXPORT((postern::plugins::api::Descriptor{"ldap", "1.0.0", &create, &destroy}))
