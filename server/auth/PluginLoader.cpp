// Loads authentication backends (postern-auth-<name>.so) at start-up and checks them before
// running any of their code: file permissions, then the exported ABI version; then the C
// function table (api/postern_plugin.h).
#include "auth/PluginLoader.h"

#include <Poco/Exception.h>
#include <Poco/SharedLibrary.h>

#include <sys/stat.h>
#include <unistd.h>
#include <cstdlib>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace postern::auth {

BackendHandle::BackendHandle(std::shared_ptr<Poco::SharedLibrary> library, const postern_plugin_table* table,
                             std::unique_ptr<PluginBackend> backend, std::string instance)
    : library_(std::move(library)), table_(table), backend_(std::move(backend)), instance_(std::move(instance)) {}

BackendHandle::BackendHandle(BackendHandle&& other) noexcept
    : library_(std::move(other.library_)), table_(std::exchange(other.table_, nullptr)),
      backend_(std::move(other.backend_)), instance_(std::move(other.instance_)) {}

BackendHandle& BackendHandle::operator=(BackendHandle&& other) noexcept {
    if (this != &other) {
        reset();
        library_ = std::move(other.library_);
        table_ = std::exchange(other.table_, nullptr);
        backend_ = std::move(other.backend_);
        instance_ = std::move(other.instance_);
    }
    return *this;
}

BackendHandle::~BackendHandle() { reset(); }

void BackendHandle::reset() noexcept {
    backend_.reset();  // the plugin's destroy(), while its library is still held
    table_ = nullptr;
}

std::string BackendHandle::pluginName() const {
    return table_ && table_->name ? table_->name : "";
}

std::string BackendHandle::pluginVersion() const {
    return table_ && table_->version ? table_->version : "";
}

PluginLoader::PluginLoader(std::string directory, std::uint32_t hostAbiVersion)
    : directory_(std::move(directory)), hostAbiVersion_(hostAbiVersion) {}

// Libraries stay loaded: Poco::SharedLibrary's destructor does not dlclose, and a backend's
// code must stay mapped as long as anything might still call it.
PluginLoader::~PluginLoader() = default;

std::string PluginLoader::pathFor(const std::string& pluginName) const {
    std::string dir = directory_.empty() ? std::string(".") : directory_;
    if (dir.back() != '/') {
        dir += '/';
    }
    return dir + "postern-auth-" + pluginName + ".so";
}

PluginLoader::Loaded PluginLoader::open(const std::string& pluginName) {
    // The name becomes part of a path: no '/', no "..", nothing surprising.
    bool nameOk = !pluginName.empty() && pluginName.size() <= 64;
    for (char c : pluginName) {
        nameOk = nameOk && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
    }
    if (!nameOk) {
        throw std::runtime_error("invalid plugin name '" + pluginName +
                                 "' (allowed: lower-case letters, digits, '-', '_')");
    }
    if (auto it = libraries_.find(pluginName); it != libraries_.end()) {
        return it->second;
    }

    const std::string path = pathFor(pluginName);
    // Whoever can write the file runs code as posternd: refuse anything but a regular file
    // only its owner can change. (Checked before dlopen runs the library's constructors.)
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw std::runtime_error("plugin " + pluginName + ": cannot use " + path + ": " +
                                 std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        throw std::runtime_error("plugin " + pluginName + ": " + path + " is not a regular file");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        throw std::runtime_error("plugin " + pluginName + ": refusing " + path +
                                 ": it is group- or world-writable (chmod go-w)");
    }
    // Nor one another user owns, nor one in a directory others may write (the file could be
    // replaced there): plugins are loaded before the privileges are dropped (review finding;
    // sshd's StrictModes does the same for its files).
    if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
        throw std::runtime_error("plugin " + pluginName + ": refusing " + path + ": owned by uid " +
                                 std::to_string(st.st_uid) + ", not root or this process's user");
    }
    {
        char* real = ::realpath(path.c_str(), nullptr);
        std::string dir = real != nullptr ? std::string(real) : path;
        std::free(real);
        dir = dir.substr(0, dir.rfind('/') == 0 ? 1 : dir.rfind('/'));
        struct stat ds {};
        if (::stat(dir.c_str(), &ds) == 0 && (ds.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (ds.st_mode & S_ISVTX) == 0) {
            throw std::runtime_error("plugin " + pluginName + ": refusing " + path + ": its directory " + dir +
                                     " is group- or world-writable (chmod go-w)");
        }
    }

    auto library = std::make_shared<Poco::SharedLibrary>();
    try {
        library->load(path, Poco::SharedLibrary::SHLIB_LOCAL);
    } catch (const Poco::Exception& e) {
        throw std::runtime_error("plugin " + pluginName + ": cannot load " + path + ": " +
                                 e.displayText());
    }

    // The ABI version is plain data: read it before calling any function of the plugin.
    if (!library->hasSymbol(POSTERN_PLUGIN_ABI_SYMBOL)) {
        throw std::runtime_error("plugin " + pluginName + " (" + path + ") does not export " +
                                 POSTERN_PLUGIN_ABI_SYMBOL + ": not a Postern plugin");
    }
    const auto* abi = static_cast<const std::uint32_t*>(library->getSymbol(POSTERN_PLUGIN_ABI_SYMBOL));
    if (*abi != hostAbiVersion_) {
        throw std::runtime_error("plugin " + pluginName + " was built for ABI " + std::to_string(*abi) +
                                 ", posternd speaks ABI " + std::to_string(hostAbiVersion_));
    }
    if (!library->hasSymbol(POSTERN_PLUGIN_ENTRY_SYMBOL)) {
        throw std::runtime_error("plugin " + pluginName + " (" + path + ") does not export " +
                                 POSTERN_PLUGIN_ENTRY_SYMBOL);
    }
    auto entry = reinterpret_cast<postern_plugin_entry_fn>(library->getSymbol(POSTERN_PLUGIN_ENTRY_SYMBOL));
    const postern_plugin_table* table = entry();
    if (table == nullptr) {
        throw std::runtime_error("plugin " + pluginName + " returned no function table");
    }
    if (table->abi_version != hostAbiVersion_) {
        throw std::runtime_error("plugin " + pluginName + " has a function table for ABI " +
                                 std::to_string(table->abi_version) + ", posternd speaks ABI " +
                                 std::to_string(hostAbiVersion_));
    }
    // A table is only ever extended at its end: a smaller one lacks functions this host calls
    // (the optional ones past the minimum are read only when the table has them).
    if (table->table_size < POSTERN_PLUGIN_TABLE_MIN_SIZE) {
        throw std::runtime_error("plugin " + pluginName + " has a function table of " +
                                 std::to_string(table->table_size) + " bytes, posternd needs " +
                                 std::to_string(POSTERN_PLUGIN_TABLE_MIN_SIZE) + " (ABI " +
                                 std::to_string(hostAbiVersion_) + ")");
    }
    if (table->create == nullptr || table->destroy == nullptr || table->authenticate == nullptr ||
        table->lookup == nullptr || table->has_domain == nullptr || table->probe == nullptr) {
        throw std::runtime_error("plugin " + pluginName + " returned an incomplete function table");
    }
    Loaded loaded{library, table};
    libraries_.emplace(pluginName, loaded);
    return loaded;
}

BackendHandle PluginLoader::load(const std::string& pluginName, const std::string& instance,
                                 const std::map<std::string, std::string>& config, std::uint32_t flags) {
    Loaded loaded = open(pluginName);
    std::unique_ptr<PluginBackend> backend;
    try {
        backend = std::make_unique<PluginBackend>(loaded.table, config, flags);
    } catch (const std::exception& e) {
        throw std::runtime_error("auth backend " + instance + " (plugin " + pluginName + "): " + e.what());
    }
    return BackendHandle(std::move(loaded.library), loaded.table, std::move(backend), instance);
}

}  // namespace postern::auth
