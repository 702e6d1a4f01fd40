// posternctl's user commands through the backend's plugin.
#include "UserStore.h"

#include "CtlSupport.h"

#include <Poco/Logger.h>
#include <Poco/Message.h>

namespace postern::ctl {

namespace api = plugins::api;

UserStore::UserStore(const config::ServerConfig& cfg, const config::BackendConfig& backend)
    : backend_(backend),
      loader_(std::make_unique<auth::PluginLoader>(cfg.pluginDir.empty() ? layout().pluginDir : cfg.pluginDir)) {
    try {
        handle_ = loader_->load(backend.plugin, backend.name, backend.params, POSTERN_CREATE_ADMIN);
    } catch (const std::exception& e) {
        throw CtlError(ExitConfig, "backend '" + backend.name + "': " + e.what());
    }
}

UserStore::~UserStore() = default;

std::string UserStore::describe() const {
    std::string d = backend_.plugin + " backend '" + backend_.name + "'";
    if (backend_.plugin == "passwd-file") {
        auto it = backend_.params.find("path");
        if (it != backend_.params.end()) {
            d += " (" + it->second + ")";
        }
    }
    return d;
}

void UserStore::fail(const api::WriteAnswer& a, const std::string& address) const {
    switch (a.status) {
    case api::WriteStatus::UnknownUser:
        throw CtlError(ExitNoUser, "no such user " + address);
    case api::WriteStatus::UnknownDomain: {
        const std::string domain = domainOf(address);
        throw CtlError(ExitNoHost, "unknown domain " + domain + " (add it with 'posternctl domain add " + domain + "')");
    }
    case api::WriteStatus::Exists:
        throw CtlError(ExitCantCreate, "user " + address + " already exists");
    case api::WriteStatus::Invalid:
        throw CtlError(ExitDataError, a.detail);
    case api::WriteStatus::Unsupported:
        throw CtlError(ExitConfig, "backend '" + backend_.name + "' (plugin " + backend_.plugin +
                                       ") cannot administer users: " + a.detail);
    case api::WriteStatus::TempFail:
        throw CtlError(ExitTempFail, "backend '" + backend_.name + "': " + a.detail);
    case api::WriteStatus::IoError:
        throw CtlError(ExitIoError, a.detail);
    case api::WriteStatus::ConfigError:
        throw CtlError(ExitConfig, a.detail);
    case api::WriteStatus::Ok:
    case api::WriteStatus::Failed:
    case api::WriteStatus::Changed:  // only replacePassword answers it (posternd's rehash)
        break;
    }
    throw CtlError(ExitSoftware, "backend '" + backend_.name + "': " + a.detail);
}

void UserStore::check(const api::WriteAnswer& a, const std::string& address) const {
    if (a.status != api::WriteStatus::Ok) {
        fail(a, address);
    }
}

void UserStore::checkCanAdd(const std::string& address) {
    check(handle_->checkNewUser(address), address);
}

void UserStore::add(const NewUser& user) {
    api::WriteAnswer a = handle_->addUser(user);
    // checkCanAdd said this backend administers users: what it cannot do now is an option
    // of this command (e.g. --quota in a passwd-file), a usage error.
    if (a.status == api::WriteStatus::Unsupported) {
        throw CtlError(ExitUsage, a.detail);
    }
    check(a, user.address);
}

void UserStore::requireUser(const std::string& address) {
    (void)show(address);
}

void UserStore::setPassword(const std::string& address, const std::string& hash) {
    check(handle_->setPassword(address, hash), address);
}

void UserStore::setEnabled(const std::string& address, bool enabled) {
    check(handle_->setEnabled(address, enabled), address);
}

void UserStore::remove(const std::string& address) {
    check(handle_->removeUser(address), address);
}

std::vector<UserInfo> UserStore::list(const std::string& domain) {
    std::vector<UserInfo> out;
    check(handle_->listUsers(domain, out), "");
    return out;
}

UserInfo UserStore::show(const std::string& address) {
    UserInfo u;
    check(handle_->showUser(address, u), address);
    return u;
}

UserSession openUserSession(const Options& o) {
    UserSession s{loadConfig(o), nullptr};
    std::vector<std::string> plugins{"postgres", "passwd-file"};
    if (!o.backend.empty()) {
        for (const auto& b : s.config.backends) {
            plugins.push_back(b.plugin);
        }
    }
    const config::BackendConfig& b = chooseBackend(s.config, o, plugins);
    Poco::Logger::setLevel("", Poco::Message::PRIO_FATAL);
    s.store = std::make_unique<UserStore>(s.config, b);
    return s;
}

auth::HashScheme newHashScheme(const config::ServerConfig& cfg) {
    auto scheme = auth::parseHashScheme(cfg.defaultScheme);
    if (!scheme) {
        throw CtlError(ExitConfig, "auth.default_scheme '" + cfg.defaultScheme + "' is not a scheme for new hashes");
    }
    return *scheme;
}

}  // namespace postern::ctl
