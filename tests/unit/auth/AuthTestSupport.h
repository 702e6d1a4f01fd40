// Helpers for the auth tests: a temp dir, file writing, the built plugin directory, a log
// capture channel and fake backends (one that cannot answer, one that verifies itself).
#pragma once

#include "api/PluginApi.h"

#include <Poco/AutoPtr.h>
#include <Poco/Channel.h>
#include <Poco/Logger.h>
#include <Poco/Message.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace postern::auth::test {

namespace api = plugins::api;

inline std::string pluginDir() { return std::string(POSTERN_BUILD_DIR) + "/plugins"; }

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "postern-auth-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

inline void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) {
        throw std::runtime_error("cannot write " + path);
    }
}

// Writes beside and renames over, as editors and config management do (new inode).
inline void replaceFile(const std::string& path, const std::string& text) {
    writeFile(path + ".tmp", text);
    std::filesystem::rename(path + ".tmp", path);
}

// Collects every message logged to one logger.
class CaptureChannel : public Poco::Channel {
public:
    void log(const Poco::Message& msg) override {
        std::lock_guard lock(mutex_);
        lines_.push_back(msg.getText());
    }
    std::vector<std::string> lines() {
        std::lock_guard lock(mutex_);
        return lines_;
    }
    void clear() {
        std::lock_guard lock(mutex_);
        lines_.clear();
    }

private:
    std::mutex mutex_;
    std::vector<std::string> lines_;
};

inline Poco::AutoPtr<CaptureChannel> captureLog(const std::string& name) {
    Poco::AutoPtr<CaptureChannel> channel(new CaptureChannel);
    Poco::Logger::get(name).setChannel(channel);
    Poco::Logger::get(name).setLevel(Poco::Message::PRIO_DEBUG);
    return channel;
}

// A backend that cannot answer anything (an LDAP server that is down).
class TempFailBackend : public api::Backend {
public:
    api::AuthAnswer authenticate(const std::string&, const std::string&, const std::string&,
                                 const std::string&) noexcept override {
        ++calls;
        api::AuthAnswer a;
        a.status = api::Status::TempFail;
        a.detail = "server down";
        return a;
    }
    api::LookupAnswer lookup(const std::string&) noexcept override {
        ++calls;
        api::LookupAnswer a;
        a.status = api::Status::TempFail;
        return a;
    }
    api::Status hasDomain(const std::string&) noexcept override {
        ++calls;
        return api::Status::TempFail;
    }
    api::ProbeAnswer probe() noexcept override {
        ++probes;
        return {api::Status::TempFail, "server down"};
    }
    int calls = 0;
    std::atomic<int> probes{0};
};

// A backend that checks the password itself (like an LDAP bind).
class VerifyingBackend : public api::Backend {
public:
    api::AuthAnswer authenticate(const std::string& user, const std::string& password,
                                 const std::string&, const std::string&) noexcept override {
        ++calls;
        api::AuthAnswer a;
        if (user != "vera@bind.test") {
            a.status = api::Status::UnknownUser;
            return a;
        }
        a.verified = true;
        a.status = password == "bindpw" ? api::Status::Ok : api::Status::BadCredentials;
        a.record.user = "Vera@Bind.test";
        return a;
    }
    api::LookupAnswer lookup(const std::string&) noexcept override {
        api::LookupAnswer a;
        a.status = api::Status::NotFound;
        return a;
    }
    api::Status hasDomain(const std::string& d) noexcept override {
        return d == "bind.test" ? api::Status::Ok : api::Status::NotFound;
    }
    api::ProbeAnswer probe() noexcept override { return {api::Status::Ok, ""}; }
    std::atomic<int> calls{0};  // authenticate() calls
};

}  // namespace postern::auth::test
