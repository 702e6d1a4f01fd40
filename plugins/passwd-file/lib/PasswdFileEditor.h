// Line-preserving, atomic edits of a Dovecot-style passwd-file: the write half of the format
// whose read half is PasswdFile (the same field rules; every edit is checked by parsing the
// result with PasswdFile::parse before it replaces the file).
#pragma once

#include "PasswdFile.h"
#include "api/PluginApi.h"

#include <string>
#include <vector>

namespace postern::plugins::passwdfile {

// Each change re-reads the file under an exclusive flock on its directory (so two writers
// cannot lose each other's edit), changes the one line concerned, writes a temp file beside it
// (same mode and owner; fsync), renames it over the old one and fsyncs the directory; the
// backend's inode/mtime check then picks it up. Comments, blank lines and every other line
// stay as they were. A file that does not exist is an empty one (the first add creates it,
// mode 0600). Not thread-safe on its own: callers serialise (PasswdFileBackend holds a mutex).
class PasswdFileEditor {
public:
    explicit PasswdFileEditor(std::string path);

    const std::string& path() const { return path_; }

    api::WriteAnswer checkNewUser(const std::string& address) const;
    // --quota has no place in a passwd-file: Unsupported.
    api::WriteAnswer addUser(const api::NewUser& user);
    api::WriteAnswer setPassword(const std::string& address, const std::string& hash);
    // setPassword only while the stored hash is oldHash (Changed otherwise, nothing written).
    api::WriteAnswer replacePassword(const std::string& address, const std::string& oldHash, const std::string& hash);
    // enable clears disabled= and nologin=; disable sets disabled=yes.
    api::WriteAnswer setEnabled(const std::string& address, bool enabled);
    api::WriteAnswer removeUser(const std::string& address);
    api::WriteAnswer listUsers(const std::string& domain, std::vector<api::UserInfo>& out) const;
    api::WriteAnswer showUser(const std::string& address, api::UserInfo& out) const;

    // App passwords: extra fields app_password.<id>=... and require_app_password=yes
    // (PasswdFile.h). Revoking deletes the field. No last-use record (posternd does not write
    // this file on logins; the auth.ok log line names the app password and the client IP).
    api::WriteAnswer addAppPassword(const api::NewAppPassword& app);
    api::WriteAnswer listAppPasswords(const std::string& address, bool& requireAppPassword,
                                      std::vector<api::AppPasswordInfo>& out) const;
    api::WriteAnswer revokeAppPassword(const std::string& address, const std::string& id);
    api::WriteAnswer setRequireAppPassword(const std::string& address, bool on);

    // Extra fields ("k=v k2=v2"): sets key=value (present) or drops key; other tokens kept.
    static std::string setExtra(const std::string& extra, const std::string& key, const std::string& value,
                                bool present);

private:
    // The file's lines (without newlines); an error if it cannot be read.
    bool read(std::vector<std::string>& lines, std::string& error) const;
    bool write(const std::vector<std::string>& lines, std::string& error) const;
    // Locks the directory, reads, runs edit (which may refuse with its answer), checks the
    // result parses, writes.
    template <typename Edit>
    api::WriteAnswer modify(Edit edit);
    // Runs change(fields) on the user's line, its fields padded with empty ones to at least
    // minFields; the line is rewritten when change answers Ok. No such user: that answer.
    template <typename Change>
    api::WriteAnswer modifyFields(const std::string& address, std::size_t minFields, Change change);
    // Runs change(extra fields) on the user's line.
    template <typename Change>
    api::WriteAnswer modifyExtra(const std::string& address, Change change);
    bool parsed(PasswdFile& file, api::WriteAnswer& answer) const;
    static api::UserInfo infoOf(const PasswdUser& user);

    std::string path_;
};

}  // namespace postern::plugins::passwdfile
