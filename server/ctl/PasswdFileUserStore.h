// posternctl's passwd-file side: edits a Dovecot-style passwd-file in place, atomically
// (temp file + fsync + rename + directory fsync), keeping every other line and comment.
#pragma once

#include "UserStore.h"
#include "config/ServerConfig.h"

#include <string>
#include <vector>

namespace postern::ctl {

// Each change re-reads the file under an exclusive flock on its directory (so two posternctl
// runs cannot lose each other's edit), rewrites the one line concerned and renames the new
// file over the old one; posternd's passwd-file backend picks it up by its inode/mtime check.
// The new file keeps the old one's mode and owner. Not thread-safe (one command at a time).
class PasswdFileUserStore final : public UserStore {
public:
    // Uses the backend's "path" key. Throws CtlError(ExitConfig) if it is missing.
    explicit PasswdFileUserStore(const config::BackendConfig& backend);

    std::string describe() const override;
    // There is no domain table: any domain is accepted (the file defines the domains).
    void checkCanAdd(const std::string& address) override;
    void add(const NewUser& user) override;
    void requireUser(const std::string& address) override;
    void setPassword(const std::string& address, const std::string& hash) override;
    void setEnabled(const std::string& address, bool enabled) override;
    void remove(const std::string& address) override;
    std::vector<UserInfo> list(const std::string& domain) override;
    UserInfo show(const std::string& address) override;

private:
    struct Line {
        std::string text;  // as read, without the newline
        std::string user;  // lower-cased login for user lines, "" for comments/blank lines
    };

    std::vector<Line> read() const;
    void write(const std::vector<Line>& lines) const;
    // Runs edit(lines) under the lock and writes the result.
    template <typename Edit>
    void modify(Edit edit);
    static std::vector<std::string> fields(const std::string& text);
    static UserInfo infoOf(const std::string& text);

    std::string name_;
    std::string path_;
};

}  // namespace postern::ctl
