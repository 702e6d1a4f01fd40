// Host side of the C boundary: one backend instance made by a plugin's C table
// (api/postern_plugin.h), seen by the rest of the server as a typed api::Backend.
#pragma once

#include "api/PluginApi.h"
#include "api/postern_plugin.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace postern::auth {

// Converts arguments to (pointer, length) views, results from the plugin's sink callbacks into
// the api:: structs (copied: the plugin's pointers live only during the callback). Statuses
// outside a call's set become TempFail for reads (fail closed) and Failed for writes; a
// missing write function is Unsupported. No exception crosses into the plugin: the sink
// callbacks catch and the call then answers TempFail / Failed. Thread-safe as the plugin is.
class PluginBackend final : public plugins::api::Backend {
public:
    // Calls table->create; throws std::runtime_error(reason) if it returns NULL.
    PluginBackend(const postern_plugin_table* table, const std::map<std::string, std::string>& config,
                  std::uint32_t flags);
    ~PluginBackend() override;
    PluginBackend(const PluginBackend&) = delete;
    PluginBackend& operator=(const PluginBackend&) = delete;

    plugins::api::AuthAnswer authenticate(const std::string& user, const std::string& password,
                                          const std::string& service, const std::string& clientIp) noexcept override;
    plugins::api::LookupAnswer lookup(const std::string& address) noexcept override;
    plugins::api::Status hasDomain(const std::string& domain) noexcept override;
    plugins::api::ProbeAnswer probe() noexcept override;

    plugins::api::WriteAnswer setPassword(const std::string& user, const std::string& newHash) noexcept override;
    plugins::api::WriteAnswer replacePassword(const std::string& user, const std::string& oldHash,
                                              const std::string& newHash) noexcept override;
    plugins::api::WriteAnswer checkNewUser(const std::string& address) noexcept override;
    plugins::api::WriteAnswer addUser(const plugins::api::NewUser& user) noexcept override;
    plugins::api::WriteAnswer setEnabled(const std::string& user, bool enabled) noexcept override;
    plugins::api::WriteAnswer removeUser(const std::string& user) noexcept override;
    plugins::api::WriteAnswer listUsers(const std::string& domain,
                                        std::vector<plugins::api::UserInfo>& out) noexcept override;
    plugins::api::WriteAnswer showUser(const std::string& address, plugins::api::UserInfo& out) noexcept override;

    // ABI 4: app passwords.
    plugins::api::WriteAnswer addAppPassword(const plugins::api::NewAppPassword& app) noexcept override;
    plugins::api::WriteAnswer listAppPasswords(const std::string& user, bool& requireAppPassword,
                                               std::vector<plugins::api::AppPasswordInfo>& out) noexcept override;
    plugins::api::WriteAnswer revokeAppPassword(const std::string& user, const std::string& id) noexcept override;
    plugins::api::WriteAnswer setRequireAppPassword(const std::string& user, bool on) noexcept override;
    plugins::api::WriteAnswer touchAppPassword(const std::string& user, const std::string& id,
                                               const std::string& clientIp) noexcept override;

    // Status numbers of the C ABI -> api:: (unknown numbers fail closed).
    static plugins::api::Status readStatus(postern_status s);
    static plugins::api::WriteStatus writeStatus(postern_status s);

private:
    const postern_plugin_table* table_;
    postern_backend* backend_ = nullptr;
};

}  // namespace postern::auth
