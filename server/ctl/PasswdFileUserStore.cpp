// posternctl's passwd-file side: atomic in-place edits of a Dovecot-style passwd-file.
#include "PasswdFileUserStore.h"

#include "CtlSupport.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace postern::ctl {

namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    });
    return s;
}

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) {
        return {};
    }
    auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

std::string dirOf(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

[[noreturn]] void ioError(const std::string& what) {
    throw CtlError(ExitIoError, what + ": " + std::strerror(errno));
}

// Closes a descriptor on every path.
struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

// Extra fields (8th field on) as tokens; set or drop one "key=value".
std::string setExtra(const std::string& extra, const std::string& key, const std::string& value, bool present) {
    std::istringstream in(extra);
    std::string token;
    std::string out;
    while (in >> token) {
        std::string k = lower(token.substr(0, token.find('=')));
        if (k == key) {
            continue;
        }
        out += (out.empty() ? "" : " ") + token;
    }
    if (present) {
        out += (out.empty() ? "" : " ") + key + "=" + value;
    }
    return out;
}

}  // namespace

PasswdFileUserStore::PasswdFileUserStore(const config::BackendConfig& backend) : name_(backend.name) {
    auto it = backend.params.find("path");
    path_ = it == backend.params.end() ? "" : trim(it->second);
    if (path_.empty()) {
        throw CtlError(ExitConfig, "backend '" + name_ + "' has no path");
    }
}

std::string PasswdFileUserStore::describe() const {
    return "passwd-file backend '" + name_ + "' (" + path_ + ")";
}

// user:password:uid:gid:gecos:home:shell:extra (the extra fields may contain ':').
std::vector<std::string> PasswdFileUserStore::fields(const std::string& text) {
    std::vector<std::string> f;
    std::size_t pos = 0;
    while (f.size() < 7) {
        auto colon = text.find(':', pos);
        if (colon == std::string::npos) {
            break;
        }
        f.push_back(text.substr(pos, colon - pos));
        pos = colon + 1;
    }
    f.push_back(text.substr(pos));
    return f;
}

std::vector<PasswdFileUserStore::Line> PasswdFileUserStore::read() const {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 && errno == ENOENT) {
        return {};  // a new file
    }
    std::ifstream in(path_, std::ios::binary);
    if (!in) {
        ioError("cannot read " + path_);
    }
    std::vector<Line> lines;
    std::string text;
    while (std::getline(in, text)) {
        Line l;
        l.text = text;
        std::string t = trim(text);
        if (!t.empty() && t[0] != '#') {
            l.user = lower(trim(fields(text)[0]));
        }
        lines.push_back(std::move(l));
    }
    if (in.bad()) {
        ioError("cannot read " + path_);
    }
    return lines;
}

void PasswdFileUserStore::write(const std::vector<Line>& lines) const {
    std::string data;
    for (const auto& l : lines) {
        data += l.text + "\n";
    }
    struct stat old {};
    const bool hadOld = ::stat(path_.c_str(), &old) == 0;
    std::string tmp = path_ + ".tmpXXXXXX";
    Fd fd(::mkstemp(tmp.data()));
    if (fd.fd < 0) {
        ioError("cannot create a temporary file next to " + path_);
    }
    auto fail = [&](const std::string& what) {
        int saved = errno;
        ::unlink(tmp.c_str());
        errno = saved;
        ioError(what);
    };
    // Same mode and owner as before (a passwd-file is often 0640 root:postern); else 0600.
    if (::fchmod(fd.fd, hadOld ? (old.st_mode & 07777) : 0600) != 0) {
        fail("chmod " + tmp);
    }
    if (hadOld && (old.st_uid != ::geteuid() || old.st_gid != ::getegid()) &&
        ::fchown(fd.fd, old.st_uid, old.st_gid) != 0) {
        fail("chown " + tmp);
    }
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd.fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fail("write " + tmp);
        }
        done += static_cast<std::size_t>(n);
    }
    // Data on disk before the name points at it, and the rename itself made durable.
    if (::fsync(fd.fd) != 0) {
        fail("fsync " + tmp);
    }
    if (::rename(tmp.c_str(), path_.c_str()) != 0) {
        fail("rename " + tmp + " to " + path_);
    }
    Fd dir(::open(dirOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.fd < 0 || ::fsync(dir.fd) != 0) {
        ioError("fsync directory of " + path_);
    }
}

template <typename Edit>
void PasswdFileUserStore::modify(Edit edit) {
    // The lock is on the directory: the file itself is replaced by every edit.
    Fd dir(::open(dirOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.fd < 0) {
        ioError("cannot open the directory of " + path_);
    }
    if (::flock(dir.fd, LOCK_EX) != 0) {
        ioError("cannot lock the directory of " + path_);
    }
    std::vector<Line> lines = read();
    edit(lines);
    write(lines);
}

UserInfo PasswdFileUserStore::infoOf(const std::string& text) {
    auto f = fields(text);
    UserInfo u;
    u.address = lower(trim(f[0]));
    u.scheme = f.size() > 1 ? schemeOf(f[1]) : "?";
    u.enabled = f.size() > 1 && !f[1].empty();
    if (f.size() == 8) {
        std::istringstream in(f[7]);
        std::string token;
        while (in >> token) {
            auto eq = token.find('=');
            std::string k = lower(token.substr(0, eq));
            std::string v = eq == std::string::npos ? "" : lower(token.substr(eq + 1));
            bool yes = v.empty() || v == "y" || v == "yes" || v == "true" || v == "1";
            if ((k == "disabled" || k == "nologin") && yes) {
                u.enabled = false;
            } else if (k == "mailbox") {
                u.mailbox = token.substr(eq + 1);
            } else if (k == "senders") {
                std::istringstream s(v);
                std::string a;
                while (std::getline(s, a, ',')) {
                    if (!trim(a).empty()) {
                        u.senders.push_back(trim(a));
                    }
                }
            }
        }
    }
    return u;
}

void PasswdFileUserStore::checkCanAdd(const std::string& address) {
    for (const auto& l : read()) {
        if (l.user == address) {
            throw CtlError(ExitCantCreate, "user " + address + " already exists");
        }
    }
}

void PasswdFileUserStore::add(const NewUser& u) {
    if (u.quotaBytes != 0) {
        throw CtlError(ExitUsage, "--quota is not supported by the passwd-file backend");
    }
    std::string extra;
    if (!u.mailbox.empty()) {
        extra = setExtra(extra, "mailbox", u.mailbox, true);
    }
    if (!u.senders.empty()) {
        std::string list = u.address;
        for (const auto& s : u.senders) {
            list += "," + s;
        }
        extra = setExtra(extra, "senders", list, true);
    }
    if (!u.enabled) {
        extra = setExtra(extra, "disabled", "yes", true);
    }
    modify([&](std::vector<Line>& lines) {
        for (const auto& l : lines) {
            if (l.user == u.address) {
                throw CtlError(ExitCantCreate, "user " + u.address + " already exists");
            }
        }
        lines.push_back({u.address + ":" + u.passwordHash + "::::::" + extra, u.address});
    });
}

void PasswdFileUserStore::requireUser(const std::string& address) {
    for (const auto& l : read()) {
        if (l.user == address) {
            return;
        }
    }
    throw CtlError(ExitNoUser, "no such user " + address);
}

void PasswdFileUserStore::setPassword(const std::string& address, const std::string& hash) {
    modify([&](std::vector<Line>& lines) {
        for (auto& l : lines) {
            if (l.user != address) {
                continue;
            }
            auto f = fields(l.text);
            if (f.size() < 2) {
                f.push_back("");
            }
            f[1] = hash;
            std::string text;
            for (std::size_t i = 0; i < f.size(); ++i) {
                text += (i ? ":" : "") + f[i];
            }
            l.text = text;
            return;
        }
        throw CtlError(ExitNoUser, "no such user " + address);
    });
}

void PasswdFileUserStore::setEnabled(const std::string& address, bool enabled) {
    modify([&](std::vector<Line>& lines) {
        for (auto& l : lines) {
            if (l.user != address) {
                continue;
            }
            auto f = fields(l.text);
            while (f.size() < 8) {
                f.push_back("");
            }
            // enable clears both ways an account is switched off here.
            f[7] = setExtra(f[7], "disabled", "yes", !enabled);
            if (enabled) {
                f[7] = setExtra(f[7], "nologin", "", false);
            }
            std::string text;
            for (std::size_t i = 0; i < f.size(); ++i) {
                text += (i ? ":" : "") + f[i];
            }
            l.text = text;
            return;
        }
        throw CtlError(ExitNoUser, "no such user " + address);
    });
}

void PasswdFileUserStore::remove(const std::string& address) {
    modify([&](std::vector<Line>& lines) {
        auto it = std::find_if(lines.begin(), lines.end(), [&](const Line& l) { return l.user == address; });
        if (it == lines.end()) {
            throw CtlError(ExitNoUser, "no such user " + address);
        }
        lines.erase(it);
    });
}

std::vector<UserInfo> PasswdFileUserStore::list(const std::string& domain) {
    std::vector<UserInfo> out;
    for (const auto& l : read()) {
        if (l.user.empty() || (!domain.empty() && domainOf(l.user) != domain)) {
            continue;
        }
        out.push_back(infoOf(l.text));
    }
    std::sort(out.begin(), out.end(), [](const UserInfo& a, const UserInfo& b) { return a.address < b.address; });
    return out;
}

UserInfo PasswdFileUserStore::show(const std::string& address) {
    for (const auto& l : read()) {
        if (l.user == address) {
            return infoOf(l.text);
        }
    }
    throw CtlError(ExitNoUser, "no such user " + address);
}

}  // namespace postern::ctl
