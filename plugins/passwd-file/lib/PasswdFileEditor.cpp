// Line-preserving, atomic edits of a Dovecot-style passwd-file.
#include "PasswdFileEditor.h"

#include "api/SizeText.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace postern::plugins::passwdfile {

namespace {

using api::WriteAnswer;
using api::WriteStatus;

std::string dirOf(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string domainOf(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : address.substr(at + 1);
}

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

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

std::string joinFields(const std::vector<std::string>& f) {
    std::string text;
    for (std::size_t i = 0; i < f.size(); ++i) {
        text += (i ? ":" : "") + f[i];
    }
    return text;
}

WriteAnswer noSuchUser(const std::string& address) { return {WriteStatus::UnknownUser, "no such user " + address}; }

}  // namespace

PasswdFileEditor::PasswdFileEditor(std::string path) : path_(std::move(path)) {}

namespace {
// Whether the extra field has `key` (lower-case), whatever blanks separate its tokens.
bool hasExtraKey(const std::string& extra, const std::string& key) {
    std::istringstream in(extra);
    std::string token;
    while (in >> token) {
        if (toLower(token.substr(0, token.find('='))) == key) return true;
    }
    return false;
}
}  // namespace

std::string PasswdFileEditor::setExtra(const std::string& extra, const std::string& key, const std::string& value,
                                       bool present) {
    std::istringstream in(extra);
    std::string token;
    std::string out;
    while (in >> token) {
        if (toLower(token.substr(0, token.find('='))) == key) {
            continue;
        }
        out += (out.empty() ? "" : " ") + token;
    }
    if (present) {
        out += (out.empty() ? "" : " ") + key + "=" + value;
    }
    return out;
}

bool PasswdFileEditor::read(std::vector<std::string>& lines, std::string& error) const {
    lines.clear();
    Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) {
        if (errno == ENOENT) {
            return true;  // a new file
        }
        error = errnoText("cannot read " + path_);
        return false;
    }
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            error = errnoText("cannot read " + path_);
            return false;
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        // A CRLF file: the CR is not part of the last field, as for the parser (a two-field
        // line's hash never matched the one it was read with, and rehashing repeated forever).
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(line);
    }
    return true;
}

bool PasswdFileEditor::write(const std::vector<std::string>& lines, std::string& error) const {
    std::string data;
    for (const auto& l : lines) {
        data += l + "\n";
    }
    struct stat old {};
    const bool hadOld = ::stat(path_.c_str(), &old) == 0;
    std::string tmp = path_ + ".tmpXXXXXX";
    Fd fd(::mkstemp(tmp.data()));
    if (fd.fd < 0) {
        error = errnoText("cannot create a temporary file next to " + path_);
        return false;
    }
    auto fail = [&](const std::string& what) {
        error = errnoText(what);
        ::unlink(tmp.c_str());
        return false;
    };
    // Same mode and owner as before (a passwd-file is often 0640 root:postern); else 0600.
    if (::fchmod(fd.fd, hadOld ? (old.st_mode & 07777) : 0600) != 0) {
        return fail("chmod " + tmp);
    }
    if (hadOld && (old.st_uid != ::geteuid() || old.st_gid != ::getegid()) &&
        ::fchown(fd.fd, old.st_uid, old.st_gid) != 0) {
        return fail("chown " + tmp);
    }
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd.fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return fail("write " + tmp);
        }
        done += static_cast<std::size_t>(n);
    }
    // Data on disk before the name points at it, and the rename itself made durable.
    if (::fsync(fd.fd) != 0) {
        return fail("fsync " + tmp);
    }
    if (::rename(tmp.c_str(), path_.c_str()) != 0) {
        return fail("rename " + tmp + " to " + path_);
    }
    Fd dir(::open(dirOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.fd < 0 || ::fsync(dir.fd) != 0) {
        error = errnoText("fsync directory of " + path_);
        return false;
    }
    return true;
}

template <typename Edit>
WriteAnswer PasswdFileEditor::modify(Edit edit) {
    // The lock is on the directory: the file itself is replaced by every edit.
    Fd dir(::open(dirOf(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.fd < 0) {
        return {WriteStatus::IoError, errnoText("cannot open the directory of " + path_)};
    }
    if (::flock(dir.fd, LOCK_EX) != 0) {
        return {WriteStatus::IoError, errnoText("cannot lock the directory of " + path_)};
    }
    std::vector<std::string> lines;
    std::string error;
    if (!read(lines, error)) {
        return {WriteStatus::IoError, error};
    }
    WriteAnswer refused = edit(lines);
    if (refused.status != WriteStatus::Ok) {
        return refused;
    }
    // Never write a file the backend would refuse to load (it would keep the old copy).
    std::string text;
    for (const auto& l : lines) {
        text += l + "\n";
    }
    try {
        PasswdFile::parse(text, path_, "", "", {}).requireNoBrokenUsers();
    } catch (const std::exception& e) {
        return {WriteStatus::Invalid, std::string("refusing the edit, the result would not load: ") + e.what()};
    }
    if (!write(lines, error)) {
        return {WriteStatus::IoError, error};
    }
    return {WriteStatus::Ok, ""};
}

template <typename Change>
WriteAnswer PasswdFileEditor::modifyFields(const std::string& address, std::size_t minFields, Change change) {
    return modify([&](std::vector<std::string>& lines) -> WriteAnswer {
        for (auto& l : lines) {
            if (userOfLine(l) != address) {
                continue;
            }
            auto f = splitFields(l);
            while (f.size() < minFields) {
                f.push_back("");
            }
            WriteAnswer a = change(f);
            if (a.status == WriteStatus::Ok) {
                l = joinFields(f);
            }
            return a;
        }
        return noSuchUser(address);
    });
}

template <typename Change>
WriteAnswer PasswdFileEditor::modifyExtra(const std::string& address, Change change) {
    return modifyFields(address, 8, [&](std::vector<std::string>& f) -> WriteAnswer { return change(f[7]); });
}

bool PasswdFileEditor::parsed(PasswdFile& file, WriteAnswer& answer) const {
    std::vector<std::string> lines;
    std::string error;
    if (!read(lines, error)) {
        answer = {WriteStatus::IoError, error};
        return false;
    }
    std::string text;
    for (const auto& l : lines) {
        text += l + "\n";
    }
    try {
        file = PasswdFile::parse(text, path_, "", "", {});
        file.requireNoBrokenUsers();
    } catch (const std::exception& e) {
        answer = {WriteStatus::Invalid, e.what()};
        return false;
    }
    return true;
}

api::UserInfo PasswdFileEditor::infoOf(const PasswdUser& u) {
    api::UserInfo info;
    info.address = u.user;
    info.enabled = !u.passwordHash.empty() && !u.disabled && !u.noLogin;
    info.scheme = api::schemeOfHash(u.passwordHash);
    info.mailbox = u.mailbox;
    // The quota= field the server enforces (AuthFacade): 0 when none or not a size.
    if (auto q = u.extra.find("quota"); q != u.extra.end()) {
        info.quotaBytes = api::quotaBytesOf(q->second).value_or(0);
    }
    if (u.sendersGiven) {
        info.senders = u.senders;
    }
    return info;
}

WriteAnswer PasswdFileEditor::checkNewUser(const std::string& address) const {
    // No domain table: any domain is accepted (the file defines the domains).
    std::vector<std::string> lines;
    std::string error;
    if (!read(lines, error)) {
        return {WriteStatus::IoError, error};
    }
    for (const auto& l : lines) {
        if (userOfLine(l) == address) {
            return {WriteStatus::Exists, "user " + address + " already exists"};
        }
    }
    return {WriteStatus::Ok, ""};
}

WriteAnswer PasswdFileEditor::addUser(const api::NewUser& u) {
    if (u.quotaBytes != 0) {
        return {WriteStatus::Unsupported, "--quota is not supported by the passwd-file backend"};
    }
    std::string extra;
    if (!u.mailbox.empty()) {
        // One token of the extra field: a blank, ':' or line break would make another field
        // (senders=...) or another account.
        for (char c : u.mailbox) {
            if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == ':') {
                return {WriteStatus::Invalid, "a mailbox must not contain blanks, ':' or control characters"};
            }
        }
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
    return modify([&](std::vector<std::string>& lines) -> WriteAnswer {
        for (const auto& l : lines) {
            if (userOfLine(l) == u.address) {
                return {WriteStatus::Exists, "user " + u.address + " already exists"};
            }
        }
        lines.push_back(u.address + ":" + u.passwordHash + "::::::" + extra);
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::setPassword(const std::string& address, const std::string& hash) {
    if (hash.find_first_of(":\n\r") != std::string::npos) {
        return {WriteStatus::Invalid, "a hash must not contain ':' or a line break"};
    }
    return modifyFields(address, 2, [&](std::vector<std::string>& f) -> WriteAnswer {
        f[1] = hash;
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::replacePassword(const std::string& address, const std::string& oldHash,
                                             const std::string& hash) {
    if (hash.find_first_of(":\n\r") != std::string::npos) {
        return {WriteStatus::Invalid, "a hash must not contain ':' or a line break"};
    }
    // Compared and written under the file's lock, as every edit: atomic against posternctl.
    return modifyFields(address, 2, [&](std::vector<std::string>& f) -> WriteAnswer {
        if (f[1] != oldHash) {
            return {WriteStatus::Changed, "the stored hash of " + address + " changed"};
        }
        f[1] = hash;
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::setEnabled(const std::string& address, bool enabled) {
    return modifyExtra(address, [&](std::string& extra) -> WriteAnswer {
        // enable clears both ways an account is switched off here.
        extra = setExtra(extra, "disabled", "yes", !enabled);
        if (enabled) {
            extra = setExtra(extra, "nologin", "", false);
        }
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::removeUser(const std::string& address) {
    return modify([&](std::vector<std::string>& lines) -> WriteAnswer {
        auto it = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) { return userOfLine(l) == address; });
        if (it == lines.end()) {
            return noSuchUser(address);
        }
        lines.erase(it);
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::addAppPassword(const api::NewAppPassword& app) {
    namespace ap = api::apppw;
    ap::Entry e;
    e.id = app.id;
    e.label = app.label;
    e.scopes = ap::parseScopes(app.scopes);
    e.expires = app.expires;
    e.created = app.created;
    e.hash = app.passwordHash;
    for (const auto& n : ap::splitList(app.networks)) {
        e.networks += (e.networks.empty() ? "" : ",") + n;
    }
    if (!ap::validId(e.id) || e.scopes == 0 || !ap::validNetworks(e.networks) ||
        (!e.label.empty() && !ap::validLabel(e.label)) || e.hash.empty() || e.hash[0] != '{' ||
        e.hash.find_first_of(" \t\r\n:") != std::string::npos || e.expires < 0) {
        return {WriteStatus::Invalid, "app password: invalid id, scope, networks, label or hash"};
    }
    const std::string key = std::string(AppPasswordFieldPrefix) + e.id;
    return modifyExtra(toLower(app.user), [&](std::string& extra) -> WriteAnswer {
        if (hasExtraKey(extra, key)) return {WriteStatus::Exists, "app password " + e.id + " already exists"};
        extra = setExtra(extra, key, formatAppPasswordField(e), true);
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::revokeAppPassword(const std::string& address, const std::string& id) {
    const std::string key = std::string(AppPasswordFieldPrefix) + toLower(id);
    return modifyExtra(address, [&](std::string& extra) -> WriteAnswer {
        // Found or not by the tokens themselves: comparing the rewritten field with the old
        // one took a hand-edited line (two blanks, a tab) for a change, and a mistyped id
        // was reported revoked while the real app password stayed valid.
        if (!hasExtraKey(extra, key)) return {WriteStatus::UnknownUser, "no app password " + id + " for " + address};
        extra = setExtra(extra, key, "", false);
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::setRequireAppPassword(const std::string& address, bool on) {
    return modifyExtra(address, [&](std::string& extra) -> WriteAnswer {
        extra = setExtra(extra, "require_app_password", "yes", on);
        return {WriteStatus::Ok, ""};
    });
}

WriteAnswer PasswdFileEditor::listAppPasswords(const std::string& address, bool& requireAppPassword,
                                               std::vector<api::AppPasswordInfo>& out) const {
    PasswdFile file;
    WriteAnswer a{WriteStatus::Ok, ""};
    if (!parsed(file, a)) {
        return a;
    }
    const PasswdUser* u = file.findUser(address);
    if (u == nullptr) {
        return noSuchUser(address);
    }
    requireAppPassword = u->requireAppPassword;
    out.clear();
    for (const auto& [id, e] : u->appPasswords) {
        api::AppPasswordInfo i;
        i.id = id;
        i.label = e.label;
        i.scopes = api::apppw::scopesText(e.scopes);
        i.expires = e.expires;
        i.networks = e.networks;
        i.created = e.created;
        out.push_back(std::move(i));
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.created < y.created; });
    return a;
}

WriteAnswer PasswdFileEditor::listUsers(const std::string& domain, std::vector<api::UserInfo>& out) const {
    PasswdFile file;
    WriteAnswer a{WriteStatus::Ok, ""};
    if (!parsed(file, a)) {
        return a;
    }
    out.clear();
    file.forEachUser([&](const PasswdUser& u) {
        if (domain.empty() || domainOf(u.user) == domain) {
            out.push_back(infoOf(u));
        }
    });
    return a;  // forEachUser walks in address order
}

WriteAnswer PasswdFileEditor::showUser(const std::string& address, api::UserInfo& out) const {
    PasswdFile file;
    WriteAnswer a{WriteStatus::Ok, ""};
    if (!parsed(file, a)) {
        return a;
    }
    const PasswdUser* u = file.findUser(address);
    if (u == nullptr) {
        return noSuchUser(address);
    }
    out = infoOf(*u);
    return a;
}

}  // namespace postern::plugins::passwdfile
