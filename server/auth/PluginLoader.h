// Loads authentication backends (postern-auth-<name>.so) at start-up and checks them before
// running any of their code: file permissions, then the exported ABI version, then the size of
// the plugin's C function table (api/postern_plugin.h).
#pragma once

#include "api/PluginApi.h"
#include "auth/PluginBackend.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace Poco {
class SharedLibrary;
}

namespace postern::auth {

// Owns one backend made by a plugin's create() (wrapped as a typed api::Backend by
// PluginBackend, which destroys it through the same plugin's destroy()). Holds the plugin's
// library so the code outlives the object (plugins are never unloaded while the daemon runs).
// Move-only. The Backend itself is thread-safe by contract.
class BackendHandle {
public:
    BackendHandle() = default;
    BackendHandle(std::shared_ptr<Poco::SharedLibrary> library, const postern_plugin_table* table,
                  std::unique_ptr<PluginBackend> backend, std::string instance);
    BackendHandle(BackendHandle&& other) noexcept;
    BackendHandle& operator=(BackendHandle&& other) noexcept;
    BackendHandle(const BackendHandle&) = delete;
    BackendHandle& operator=(const BackendHandle&) = delete;
    ~BackendHandle();

    plugins::api::Backend* get() const { return backend_.get(); }
    plugins::api::Backend* operator->() const { return backend_.get(); }
    explicit operator bool() const { return backend_ != nullptr; }

    const std::string& instance() const { return instance_; }
    std::string pluginName() const;
    std::string pluginVersion() const;

private:
    void reset() noexcept;

    std::shared_ptr<Poco::SharedLibrary> library_;  // declared first: destroyed last
    const postern_plugin_table* table_ = nullptr;
    std::unique_ptr<PluginBackend> backend_;
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
    // world-writable; a missing or different ABI version; a missing entry point; a table of
    // another ABI, smaller than this host's, or without a required function; create() failing.
    // flags: POSTERN_CREATE_* (posternctl's user commands pass POSTERN_CREATE_ADMIN).
    BackendHandle load(const std::string& pluginName, const std::string& instance,
                       const std::map<std::string, std::string>& config, std::uint32_t flags = 0);

private:
    struct Loaded {
        std::shared_ptr<Poco::SharedLibrary> library;
        const postern_plugin_table* table = nullptr;
    };
    Loaded open(const std::string& pluginName);

    std::string directory_;
    std::uint32_t hostAbiVersion_;
    std::map<std::string, Loaded> libraries_;
};

}  // namespace postern::auth
