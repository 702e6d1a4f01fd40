// Loads authentication backends (postern-auth-<name>.so) at start-up and checks them before
// running any of their code: file permissions, then the exported ABI version.
#include "auth/PluginLoader.h"

#include <Poco/Exception.h>
#include <Poco/SharedLibrary.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace postern::auth {

namespace api = plugins::api;

BackendHandle::BackendHandle(std::shared_ptr<Poco::SharedLibrary> library,
                             const api::Descriptor* descriptor, api::Backend* backend,
                             std::string instance)
    : library_(std::move(library)), descriptor_(descriptor), backend_(backend),
      instance_(std::move(instance)) {}

BackendHandle::BackendHandle(BackendHandle&& other) noexcept
    : library_(std::move(other.library_)), descriptor_(std::exchange(other.descriptor_, nullptr)),
      backend_(std::exchange(other.backend_, nullptr)), instance_(std::move(other.instance_)) {}

BackendHandle& BackendHandle::operator=(BackendHandle&& other) noexcept {
    if (this != &other) {
        reset();
        library_ = std::move(other.library_);
        descriptor_ = std::exchange(other.descriptor_, nullptr);
        backend_ = std::exchange(other.backend_, nullptr);
        instance_ = std::move(other.instance_);
    }
    return *this;
}

BackendHandle::~BackendHandle() { reset(); }

void BackendHandle::reset() noexcept {
    // The object was made by the plugin's allocator and vtable: only its destroy() may free it.
    if (backend_ != nullptr && descriptor_ != nullptr && descriptor_->destroy != nullptr) {
        descriptor_->destroy(backend_);
    }
    backend_ = nullptr;
    descriptor_ = nullptr;
}

std::string BackendHandle::pluginName() const {
    return descriptor_ && descriptor_->name ? descriptor_->name : "";
}

std::string BackendHandle::pluginVersion() const {
    return descriptor_ && descriptor_->version ? descriptor_->version : "";
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

std::shared_ptr<Poco::SharedLibrary> PluginLoader::open(const std::string& pluginName) {
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
    if (!library->hasSymbol(POSTERN_PLUGIN_DESCRIPTOR_SYMBOL)) {
        throw std::runtime_error("plugin " + pluginName + " (" + path + ") does not export " +
                                 POSTERN_PLUGIN_DESCRIPTOR_SYMBOL);
    }
    libraries_.emplace(pluginName, library);
    return library;
}

BackendHandle PluginLoader::load(const std::string& pluginName, const std::string& instance,
                                 const std::map<std::string, std::string>& config) {
    auto library = open(pluginName);
    using DescriptorFn = const api::Descriptor* (*)() noexcept;
    auto descriptorFn =
        reinterpret_cast<DescriptorFn>(library->getSymbol(POSTERN_PLUGIN_DESCRIPTOR_SYMBOL));
    const api::Descriptor* descriptor = descriptorFn();
    if (descriptor == nullptr || descriptor->create == nullptr || descriptor->destroy == nullptr) {
        throw std::runtime_error("plugin " + pluginName + " returned an incomplete descriptor");
    }
    std::string error;
    api::Backend* backend = descriptor->create(config, error);
    if (backend == nullptr) {
        throw std::runtime_error("auth backend " + instance + " (plugin " + pluginName +
                                 "): " + (error.empty() ? std::string("create() failed") : error));
    }
    return BackendHandle(std::move(library), descriptor, backend, instance);
}

}  // namespace postern::auth
