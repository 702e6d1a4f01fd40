#include "app/Privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace postern::app {

void checkSecretFile(const std::string& path, const std::string& what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw std::runtime_error(what + " " + path + ": not a regular file");
    if (st.st_mode & S_IROTH)
        throw std::runtime_error(what + " " + path + " is readable by every user; fix with: chmod o-rwx " + path);
}

namespace {

struct Account {
    uid_t uid;
    gid_t gid;
};

// server.user and server.group (default: the user's primary group) as numbers.
Account serverAccount(const std::string& user, const std::string& group) {
    std::vector<char> buf(16384);
    struct passwd pw {};
    struct passwd* pwp = nullptr;
    if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &pwp) != 0 || !pwp)
        throw std::runtime_error("server.user: no such user '" + user + "'");
    uid_t uid = pw.pw_uid;
    gid_t gid = pw.pw_gid;
    if (!group.empty()) {
        std::vector<char> gbuf(16384);
        struct group gr {};
        struct group* grp = nullptr;
        if (::getgrnam_r(group.c_str(), &gr, gbuf.data(), gbuf.size(), &grp) != 0 || !grp)
            throw std::runtime_error("server.group: no such group '" + group + "'");
        gid = gr.gr_gid;
    }
    return {uid, gid};
}

}  // namespace

void handOverDirectories(const std::vector<std::string>& dirs, const std::string& user, const std::string& group) {
    if (::geteuid() != 0 || user.empty()) return;
    const Account a = serverAccount(user, group);
    if (a.uid == 0) return;
    for (const auto& d : dirs) {
        struct stat st {};
        if (d.empty() || ::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0) continue;
        if (::lchown(d.c_str(), a.uid, a.gid) != 0)
            throw std::runtime_error("cannot give " + d + " to server.user " + user + ": " + std::strerror(errno));
    }
}

void dropPrivileges(const std::string& user, const std::string& group, bool allowRoot) {
    if (user.empty()) {
        if (::geteuid() == 0 && !allowRoot)
            throw std::runtime_error(
                "refusing to serve clients as root: set server.user (and server.group) to an unprivileged "
                "account, or server.allow_root = true to accept the risk");
        return;
    }
    const auto [uid, gid] = serverAccount(user, group);
    if (::geteuid() != 0) {
        if (::geteuid() == uid) return;  // already that user
        throw std::runtime_error("server.user = " + user + ", but posternd is not started as root and cannot switch");
    }
    if (uid == 0 && !allowRoot) throw std::runtime_error("server.user is root; set server.allow_root = true to accept that");
    // Order matters: supplementary groups and gid while still root, uid last.
    if (::setgroups(1, &gid) != 0) throw std::runtime_error(std::string("setgroups: ") + std::strerror(errno));
    if (::setgid(gid) != 0) throw std::runtime_error(std::string("setgid: ") + std::strerror(errno));
    if (::setuid(uid) != 0) throw std::runtime_error(std::string("setuid: ") + std::strerror(errno));
    if (uid != 0 && (::setuid(0) == 0 || ::geteuid() == 0))
        throw std::runtime_error("privilege drop failed: root could be regained");
}

}  // namespace postern::app
