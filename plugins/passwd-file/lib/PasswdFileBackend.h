// passwd-file auth backend: users from a Dovecot-compatible passwd-file, aliases from an
// optional "alias: dest, dest" file; both re-read when they change.
#pragma once

#include "PasswdFile.h"
#include "PasswdFileEditor.h"
#include "api/PluginApi.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

namespace postern::plugins::passwdfile {

// Config keys (under auth.backend.<instance>.):
//   path            passwd-file (required)
//   aliases         aliases file ("" = none)
//   domains         comma list of extra local domains; users' and aliases' domains always are
//   check_interval  how often to stat the files for changes: "1s" (default), "500ms", "0"
struct PasswdFileConfig {
    std::string path;
    std::string aliasesPath;
    std::vector<std::string> domains;
    std::chrono::milliseconds checkInterval{1000};

    // Throws std::invalid_argument naming the key (unknown key, missing path, bad value).
    static PasswdFileConfig fromMap(const std::map<std::string, std::string>& config);
};

// Serves authenticate/lookup/hasDomain from an immutable snapshot. The files are stat'ed at
// most once per checkInterval (by whichever thread comes first); when inode, size or mtime
// change they are parsed into a new snapshot that is swapped in under a shared_mutex (a file
// changed in place (the same inode), empty or lacking its last line end is taken only once it
// has not changed for checkInterval / 4 (at most 250 ms): it may be caught inside a rewrite;
// a file renamed over the old one is taken at once). A file
// that cannot be read or parsed later keeps the last good snapshot and logs once per change,
// and again every ten minutes while it stays so.
// Thread-safe. No method throws: any failure answers TempFail.
class PasswdFileBackend final : public api::Backend {
public:
    // Loads the files now; throws std::runtime_error if they cannot be read or parsed.
    // admin (posternctl's user commands): a passwd-file that does not exist yet is empty.
    explicit PasswdFileBackend(PasswdFileConfig config, bool admin = false);

    // Ok + stored hash (verified = false); UnknownUser; Disabled (disabled=yes, nologin=y or
    // an empty password field; the record and hash are still returned for timing equalisation).
    api::AuthAnswer authenticate(const std::string& user, const std::string& password,
                                 const std::string& service, const std::string& clientIp) noexcept override;
    // Ok: a user (isMailbox) and/or an alias (aliasDestinations); Disabled: disabled=yes;
    // NotFound.
    api::LookupAnswer lookup(const std::string& address) noexcept override;
    api::Status hasDomain(const std::string& domain) noexcept override;
    // Ok if the passwd-file (and the aliases file, if configured) can be opened and read now;
    // TempFail naming the file and the error otherwise (the last good copy still answers
    // logins, but the next change could not be loaded: the operator must see it).
    api::ProbeAnswer probe() noexcept override;

    // Writes through PasswdFileEditor (line-preserving, atomic, flock'ed); serialised by a
    // mutex. A successful write reloads the snapshot at once (the daemon's rehash on login:
    // the next login reads the new hash, not the old one until the next stat check).
    api::WriteAnswer setPassword(const std::string& user, const std::string& newHash) noexcept override;
    api::WriteAnswer replacePassword(const std::string& user, const std::string& oldHash,
                                     const std::string& newHash) noexcept override;
    api::WriteAnswer checkNewUser(const std::string& address) noexcept override;
    api::WriteAnswer addUser(const api::NewUser& user) noexcept override;
    api::WriteAnswer setEnabled(const std::string& user, bool enabled) noexcept override;
    api::WriteAnswer removeUser(const std::string& user) noexcept override;
    api::WriteAnswer listUsers(const std::string& domain, std::vector<api::UserInfo>& out) noexcept override;
    api::WriteAnswer showUser(const std::string& address, api::UserInfo& out) noexcept override;

    // App passwords in extra fields (PasswdFile.h). touchAppPassword keeps nothing: the file
    // is configuration, not written on logins (the auth.ok log line records the use).
    api::WriteAnswer addAppPassword(const api::NewAppPassword& app) noexcept override;
    api::WriteAnswer listAppPasswords(const std::string& user, bool& requireAppPassword,
                                      std::vector<api::AppPasswordInfo>& out) noexcept override;
    api::WriteAnswer revokeAppPassword(const std::string& user, const std::string& id) noexcept override;
    api::WriteAnswer setRequireAppPassword(const std::string& user, bool on) noexcept override;
    api::WriteAnswer touchAppPassword(const std::string&, const std::string&, const std::string&) noexcept override {
        return {api::WriteStatus::Ok, ""};
    }

private:
    template <typename F>
    api::WriteAnswer edit(F&& f) noexcept;
    std::string unreadable(const std::string& path) const;
    struct FileStamp {
        std::uint64_t device = 0;
        std::uint64_t inode = 0;
        std::int64_t size = -1;
        std::int64_t mtimeNs = 0;
        bool operator==(const FileStamp&) const = default;
    };

    struct Snapshot {
        PasswdFile file;
        FileStamp passwdStamp;
        FileStamp aliasesStamp;
    };

    std::shared_ptr<const Snapshot> current() noexcept;
    void reloadIfChanged();
    void reloadAfterWrite() noexcept;
    std::shared_ptr<const Snapshot> load() const;
    void logBroken(const Snapshot& snapshot) const;
    std::string readFile(const std::string& path, FileStamp& stamp) const;
    std::optional<FileStamp> statFile(const std::string& path) const;
    // Empty, or not ending with a line end: maybe caught inside a rewrite.
    static bool looksUnfinished(const std::string& path);
    api::UserRecord recordOf(const PasswdUser& user) const;

    const PasswdFileConfig config_;
    mutable std::shared_mutex snapshotMutex_;
    std::shared_ptr<const Snapshot> snapshot_;
    std::atomic<std::int64_t> nextCheckMs_{0};
    std::mutex reloadMutex_;                      // one reloader at a time
    std::optional<std::pair<FileStamp, FileStamp>> failedStamps_;  // guarded by reloadMutex_
    std::string failedError_;          // why (reloadMutex_)
    std::int64_t failedLoggedMs_ = 0;  // when that was last logged (reloadMutex_)
    // A half-written-looking change seen at the last check, applied when the next one sees the
    // same (reloadMutex_).
    std::optional<std::pair<FileStamp, FileStamp>> changingStamps_;
    std::mutex editMutex_;
    PasswdFileEditor editor_;
};

}  // namespace postern::plugins::passwdfile
