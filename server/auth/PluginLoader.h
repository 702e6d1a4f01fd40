// Loads authentication backends (postern-auth-<name>.so) at start-up and checks them before
// running any of their code: file permissions, then the exported ABI version.
#pragma once

#include "api/PluginApi.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace Poco {
class SharedLibrary;
}

namespace postern::auth {

// Owns one Backend made by a plugin's create(); destroys it through the same plugin's
// destroy(). Holds the plugin's library so the code outlives the object (plugins are never
// unloaded while the daemon runs). Move-only. The Backend itself is thread-safe by contract.
class BackendHandle {
public:
    BackendHandle() = default;
    BackendHandle(std::shared_ptr<Poco::SharedLibrary> library,
                  const plugins::api::Descriptor* descriptor, plugins::api::Backend* backend,
                  std::string instance);
    BackendHandle(BackendHandle&& other) noexcept;
    BackendHandle& operator=(BackendHandle&& other) noexcept;
    BackendHandle(const BackendHandle&) = delete;
    BackendHandle& operator=(const BackendHandle&) = delete;
    ~BackendHandle();

    plugins::api::Backend* get() const { return backend_; }
    plugins::api::Backend* operator->() const { return backend_; }
    explicit operator bool() const { return backend_ != nullptr; }

    const std::string& instance() const { return instance_; }
    std::string pluginName() const;
    std::string pluginVersion() const;

private:
    void reset() noexcept;

    std::shared_ptr<Poco::SharedLibrary> library_;
    const plugins::api::Descriptor* descriptor_ = nullptr;
    plugins::api::Backend* backend_ = nullptr;
    std::string instance_;
};

// Finds, checks and opens plugins in one directory. Start-up only, single-threaded: every
// failure throws std::runtime_error with one line for the operator. A library loaded once is
// shared by every instance made from it and kept loaded (RTLD_LOCAL) for the process lifetime.
class PluginLoader {
public:
    // hostAbiVersion is what this posternd speaks; tests pass another value to check refusal.
    explicit PluginLoader(std::string directory,
                          std::uint32_t hostAbiVersion = plugins::api::AbiVersion);
    ~PluginLoader();

    // "<directory>/postern-auth-<pluginName>.so"; pluginName is [a-z0-9_-]+.
    std::string pathFor(const std::string& pluginName) const;

    // Loads the plugin (if not yet loaded) and creates one backend instance from config
    // (the keys under auth.backend.<instance>. with that prefix stripped).
    // Refuses: a bad name; a missing file; a file that is not regular or is group- or
    // world-writable; a missing or different ABI version; a missing descriptor; create() failing.
    BackendHandle load(const std::string& pluginName, const std::string& instance,
                       const std::map<std::string, std::string>& config);

private:
    std::shared_ptr<Poco::SharedLibrary> open(const std::string& pluginName);

    std::string directory_;
    std::uint32_t hostAbiVersion_;
    std::map<std::string, std::shared_ptr<Poco::SharedLibrary>> libraries_;
};

}  // namespace postern::auth
