// passwd-file auth backend: users from a Dovecot-compatible passwd-file, aliases from an
// optional "alias: dest, dest" file; both re-read when they change.
#include "PasswdFileBackend.h"

#include <Poco/Logger.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <sstream>
#include <stdexcept>

namespace postern::plugins::passwdfile {

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.auth.passwd-file");
    return l;
}

std::int64_t steadyMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::chrono::milliseconds parseDuration(const std::string& key, const std::string& value) {
    std::size_t used = 0;
    long long n = -1;
    try {
        n = std::stoll(value, &used);
    } catch (const std::exception&) {
        n = -1;
    }
    std::string unit = value.substr(used);
    if (n < 0 || (unit != "s" && unit != "ms" && !(unit.empty() && n == 0))) {
        throw std::invalid_argument("invalid value '" + value + "' for " + key +
                                    " (use e.g. 1s or 500ms)");
    }
    return unit == "s" ? std::chrono::milliseconds(n * 1000) : std::chrono::milliseconds(n);
}

}  // namespace

PasswdFileConfig PasswdFileConfig::fromMap(const std::map<std::string, std::string>& config) {
    PasswdFileConfig c;
    static const std::set<std::string> Known{"path", "aliases", "local_domains", "check_interval"};
    for (const auto& [key, value] : config) {
        if (Known.count(key) == 0) {
            throw std::invalid_argument("unknown config key '" + key +
                                        "' (known: path, aliases, local_domains, check_interval)");
        }
    }
    if (auto it = config.find("path"); it != config.end()) {
        c.path = trim(it->second);
    }
    if (c.path.empty()) {
        throw std::invalid_argument("config key 'path' is required");
    }
    if (auto it = config.find("aliases"); it != config.end()) {
        c.aliasesPath = trim(it->second);
    }
    if (auto it = config.find("local_domains"); it != config.end()) {
        std::istringstream in(it->second);
        std::string d;
        while (std::getline(in, d, ',')) {
            d = toLower(trim(d));
            while (!d.empty() && d.back() == '.') {
                d.pop_back();
            }
            if (!d.empty()) {
                c.domains.push_back(d);
            }
        }
    }
    if (auto it = config.find("check_interval"); it != config.end()) {
        c.checkInterval = parseDuration("check_interval", trim(it->second));
    }
    return c;
}

PasswdFileBackend::PasswdFileBackend(PasswdFileConfig config, bool admin)
    : config_(std::move(config)), editor_(config_.path) {
    struct stat st {};
    if (admin && ::stat(config_.path.c_str(), &st) != 0 && errno == ENOENT) {
        // posternctl's first "user add" creates the file.
        snapshot_ = std::make_shared<Snapshot>(Snapshot{
            PasswdFile::parse("", config_.path, "", config_.aliasesPath, config_.domains), FileStamp{}, FileStamp{}});
        nextCheckMs_ = steadyMs() + config_.checkInterval.count();
        return;
    }
    snapshot_ = load();
    nextCheckMs_ = steadyMs() + config_.checkInterval.count();
    logger().information("passwd-file " + config_.path + ": " +
                         std::to_string(snapshot_->file.userCount()) + " users, " +
                         std::to_string(snapshot_->file.aliasCount()) + " aliases");
    logBroken(*snapshot_);
}

// Users whose lines were not taken: said at every load (their logins and mail get temporary
// failures until the file is fixed).
void PasswdFileBackend::logBroken(const Snapshot& snapshot) const {
    if (snapshot.file.brokenCount() == 0) return;
    logger().error("passwd-file " + config_.path + ": " + std::to_string(snapshot.file.brokenCount()) +
                   " users not loaded (their logins and mail fail temporarily until the file is fixed): " +
                   snapshot.file.describeBroken(5));
}

std::optional<PasswdFileBackend::FileStamp> PasswdFileBackend::statFile(const std::string& path) const {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return std::nullopt;
    }
    return FileStamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                     static_cast<std::int64_t>(st.st_size),
                     static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Stamp and text come from the same open file, so a rename in between cannot pair the old
// stamp with the new text (which would hide the next change).
std::string PasswdFileBackend::readFile(const std::string& path, FileStamp& stamp) const {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
    }
    struct stat st {};
    std::string text;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    char buf[65536];
    while (ok) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            ok = false;
        } else if (n == 0) {
            break;
        } else {
            text.append(buf, static_cast<std::size_t>(n));
        }
    }
    int savedErrno = errno;
    ::close(fd);
    if (!ok) {
        throw std::runtime_error("cannot read " + path + ": " +
                                 (S_ISREG(st.st_mode) ? std::strerror(savedErrno) : "not a regular file"));
    }
    stamp = FileStamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                      static_cast<std::int64_t>(st.st_size),
                      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
    return text;
}

std::shared_ptr<const PasswdFileBackend::Snapshot> PasswdFileBackend::load() const {
    FileStamp passwdStamp;
    FileStamp aliasesStamp;
    std::string passwd = readFile(config_.path, passwdStamp);
    std::string aliases;
    if (!config_.aliasesPath.empty()) {
        aliases = readFile(config_.aliasesPath, aliasesStamp);
    }
    auto s = std::make_shared<Snapshot>(Snapshot{
        PasswdFile::parse(passwd, config_.path, aliases, config_.aliasesPath, config_.domains),
        passwdStamp, aliasesStamp});
    return s;
}

void PasswdFileBackend::reloadIfChanged() {
    const std::int64_t now = steadyMs();
    std::int64_t next = nextCheckMs_.load(std::memory_order_relaxed);
    // At most one stat per interval, done by the thread that wins the exchange.
    if (now < next || !nextCheckMs_.compare_exchange_strong(next, now + config_.checkInterval.count())) {
        return;
    }
    std::unique_lock reloadLock(reloadMutex_, std::try_to_lock);
    if (!reloadLock.owns_lock()) {
        return;
    }
    std::shared_ptr<const Snapshot> old;
    {
        std::shared_lock lock(snapshotMutex_);
        old = snapshot_;
    }
    auto passwdStamp = statFile(config_.path);
    std::optional<FileStamp> aliasesStamp = FileStamp{};
    if (!config_.aliasesPath.empty()) {
        aliasesStamp = statFile(config_.aliasesPath);
    }
    // A vanished file is most often a moment inside a non-atomic rewrite: keep serving.
    std::pair<FileStamp, FileStamp> seen{passwdStamp.value_or(FileStamp{}), aliasesStamp.value_or(FileStamp{})};
    if (passwdStamp && aliasesStamp && *passwdStamp == old->passwdStamp &&
        *aliasesStamp == old->aliasesStamp) {
        failedStamps_.reset();
        return;
    }
    if (failedStamps_ && *failedStamps_ == seen) {
        // Already failed on exactly these files. Said again every ten minutes: meanwhile no
        // change to the file (a disabled or removed account) takes effect (review finding).
        if (now - failedLoggedMs_ >= 10 * 60 * 1000) {
            failedLoggedMs_ = now;
            logger().error("passwd-file " + config_.path + ": still not loaded, changes to it do not take effect " +
                           "until it is fixed: " + failedError_);
        }
        return;
    }
    // A file rewritten in place (`script > users.passwd`: truncated, then written, in whole
    // lines or not) must not be taken half-way: a cut list would answer its users 550 "User
    // unknown" and 535 until the next check. A file changed in place (the same inode), or
    // empty, or not ending with a line end, and modified less than a quarter of
    // check_interval (at most 250 ms) ago, is loaded only when a later check finds it
    // unchanged. A file replaced by a rename (a new inode, as posternctl and most editors
    // write) is complete: taken at once (an inode number that two renames in a row happened to
    // reuse only costs the wait).
    const auto confirmMs = std::min<std::int64_t>(250, std::max<std::int64_t>(1, config_.checkInterval.count() / 4));
    const std::int64_t wallNs = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::system_clock::now().time_since_epoch()).count();
    auto provisional = [&](const std::optional<FileStamp>& stamp, const FileStamp& before, const std::string& path) {
        if (stamp && *stamp == before) return false;  // unchanged
        if (stamp && wallNs - stamp->mtimeNs >= confirmMs * 1000000) return false;  // settled
        return (stamp && stamp->device == before.device && stamp->inode == before.inode) || looksUnfinished(path);
    };
    if (provisional(passwdStamp, old->passwdStamp, config_.path) ||
        (!config_.aliasesPath.empty() && provisional(aliasesStamp, old->aliasesStamp, config_.aliasesPath))) {
        if (!changingStamps_ || *changingStamps_ != seen) {
            changingStamps_ = seen;
            nextCheckMs_.store(now + confirmMs, std::memory_order_relaxed);
            return;
        }
    }
    changingStamps_.reset();
    try {
        auto fresh = load();
        {
            std::unique_lock lock(snapshotMutex_);
            snapshot_ = fresh;
        }
        failedStamps_.reset();
        logger().information("passwd-file " + config_.path + " reloaded: " +
                             std::to_string(fresh->file.userCount()) + " users, " +
                             std::to_string(fresh->file.aliasCount()) + " aliases");
        logBroken(*fresh);
    } catch (const std::exception& e) {
        failedStamps_ = seen;
        failedError_ = e.what();
        failedLoggedMs_ = now;
        logger().error("passwd-file " + config_.path + ": reload failed, keeping the last good copy: " +
                       e.what());
    }
}

std::shared_ptr<const PasswdFileBackend::Snapshot> PasswdFileBackend::current() noexcept {
    try {
        reloadIfChanged();
    } catch (...) {
        // Keep serving the last good snapshot; a reload problem is logged where it happens.
    }
    std::shared_lock lock(snapshotMutex_);
    return snapshot_;
}

api::UserRecord PasswdFileBackend::recordOf(const PasswdUser& u) const {
    api::UserRecord r;
    r.user = u.user;
    r.passwordHash = u.passwordHash;
    r.senderAddresses = u.senders;
    r.mailbox = u.mailbox;
    r.extra = u.extra;
    return r;
}

api::AuthAnswer PasswdFileBackend::authenticate(const std::string& user, const std::string& password,
                                                const std::string& service, const std::string& clientIp) noexcept {
    api::AuthAnswer a;  // TempFail
    try {
        auto snap = current();
        const PasswdUser* u = snap->file.findUser(toLower(user));
        if (u == nullptr) {
            if (const std::string* why = snap->file.findBroken(toLower(user))) {
                a.detail = "the user's line was not loaded: " + *why;  // TempFail
                return a;
            }
            a.status = api::Status::UnknownUser;
            return a;
        }
        a.record = recordOf(*u);
        a.verified = false;
        if (u->disabled || u->noLogin || u->passwordHash.empty()) {
            a.status = api::Status::Disabled;
            a.detail = u->disabled ? "disabled=yes" : u->noLogin ? "nologin" : "no password set";
            return a;
        }
        // An app password is found by its id (the part before '-'); only its hash is verified.
        const auto id = api::apppw::idOf(password);
        const auto app = id ? u->appPasswords.find(*id) : u->appPasswords.end();
        if (app != u->appPasswords.end()) {
            const api::apppw::Entry& e = app->second;
            a.record.passwordHash = e.hash;
            a.appPasswordId = e.id;
            a.appPasswordExpires = e.expires;
            a.appPasswordIpBound = !e.networks.empty();
            a.record.extra[api::apppw::ScopesAttribute] = api::apppw::scopesText(e.scopes);
            a.refusal = api::apppw::refusal(e, service, clientIp, static_cast<std::int64_t>(::time(nullptr)));
        } else if (u->requireAppPassword) {
            a.refusal = api::apppw::MainPasswordRefused;
        }
        a.status = api::Status::Ok;
    } catch (const std::exception& e) {
        a = {};
        a.detail = e.what();
    } catch (...) {
        a = {};
        a.detail = "unexpected error";
    }
    return a;
}

api::LookupAnswer PasswdFileBackend::lookup(const std::string& address) noexcept {
    api::LookupAnswer a;  // TempFail
    try {
        auto snap = current();
        const std::string key = toLower(address);
        const PasswdUser* u = snap->file.findUser(key);
        const std::vector<std::string>* alias = snap->file.findAlias(key);
        if (u == nullptr) {
            if (const std::string* why = snap->file.findBroken(key)) {
                a.detail = "the user's line was not loaded: " + *why;  // TempFail
                return a;
            }
        }
        if (u != nullptr && u->disabled && alias == nullptr) {
            a.status = api::Status::Disabled;
            a.detail = "disabled=yes";
            return a;
        }
        if (u == nullptr && alias == nullptr) {
            a.status = api::Status::NotFound;
            return a;
        }
        if (u != nullptr && !u->disabled) {
            a.record = recordOf(*u);
            a.record.passwordHash.clear();  // a recipient lookup has no use for it
            a.isMailbox = true;
        }
        if (alias != nullptr) {
            a.aliasDestinations = *alias;
        }
        a.status = api::Status::Ok;
    } catch (const std::exception& e) {
        a = {};
        a.detail = e.what();
    } catch (...) {
        a = {};
        a.detail = "unexpected error";
    }
    return a;
}

api::Status PasswdFileBackend::hasDomain(const std::string& domain) noexcept {
    try {
        auto snap = current();
        return snap->file.hasDomain(toLower(domain)) ? api::Status::Ok : api::Status::NotFound;
    } catch (...) {
        return api::Status::TempFail;
    }
}

// Opens the file and reads a byte: what the next reload would need. "" if that works.
std::string PasswdFileBackend::unreadable(const std::string& path) const {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return "cannot open " + path + ": " + std::strerror(errno);
    }
    std::string problem;
    struct stat st {};
    char c = 0;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        problem = path + " is not a regular file";
    } else if (::pread(fd, &c, 1, 0) < 0) {
        problem = "cannot read " + path + ": " + std::strerror(errno);
    }
    ::close(fd);
    return problem;
}

bool PasswdFileBackend::looksUnfinished(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;  // gone or unreadable: load() says so
    struct stat st {};
    char last = '\n';
    bool unfinished = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                      (st.st_size == 0 || (::pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n'));
    ::close(fd);
    return unfinished;
}

api::ProbeAnswer PasswdFileBackend::probe() noexcept {
    api::ProbeAnswer a;  // TempFail
    try {
        std::string problem = unreadable(config_.path);
        if (problem.empty() && !config_.aliasesPath.empty()) {
            problem = unreadable(config_.aliasesPath);
        }
        if (problem.empty()) {
            a.status = api::Status::Ok;
        } else {
            a.detail = "passwd-file: " + problem;
        }
    } catch (...) {
        a = {};
        a.detail = "passwd-file: unexpected error";
    }
    return a;
}

// Our own write: read it back now, whatever the stat check would say (same-size file in the
// same clock tick), so readers never see the hash that was just replaced.
void PasswdFileBackend::reloadAfterWrite() noexcept {
    try {
        std::lock_guard reloadLock(reloadMutex_);
        auto fresh = load();
        {
            std::unique_lock lock(snapshotMutex_);
            snapshot_ = fresh;
        }
        failedStamps_.reset();
    } catch (const std::exception& e) {
        // The next stat check tries again (and logs if it keeps failing).
        logger().warning("passwd-file " + config_.path + ": cannot re-read after a write: " + e.what());
    } catch (...) {
    }
}

template <typename F>
api::WriteAnswer PasswdFileBackend::edit(F&& f) noexcept {
    try {
        std::lock_guard lock(editMutex_);
        return f();
    } catch (const std::exception& e) {
        return {api::WriteStatus::Failed, std::string("passwd-file: ") + e.what()};
    } catch (...) {
        return {api::WriteStatus::Failed, "passwd-file: unexpected error"};
    }
}

api::WriteAnswer PasswdFileBackend::setPassword(const std::string& user, const std::string& newHash) noexcept {
    return edit([&] {
        api::WriteAnswer a = editor_.setPassword(toLower(user), newHash);
        if (a.status == api::WriteStatus::Ok) {
            reloadAfterWrite();  // under editMutex_: the next write waits until readers see this one
        }
        return a;
    });
}

api::WriteAnswer PasswdFileBackend::replacePassword(const std::string& user, const std::string& oldHash,
                                                    const std::string& newHash) noexcept {
    return edit([&] {
        api::WriteAnswer a = editor_.replacePassword(toLower(user), oldHash, newHash);
        if (a.status == api::WriteStatus::Ok) {
            reloadAfterWrite();
        }
        return a;
    });
}

api::WriteAnswer PasswdFileBackend::checkNewUser(const std::string& address) noexcept {
    return edit([&] { return editor_.checkNewUser(toLower(address)); });
}

api::WriteAnswer PasswdFileBackend::addUser(const api::NewUser& user) noexcept {
    return edit([&] { return editor_.addUser(user); });
}

api::WriteAnswer PasswdFileBackend::setEnabled(const std::string& user, bool enabled) noexcept {
    return edit([&] { return editor_.setEnabled(toLower(user), enabled); });
}

api::WriteAnswer PasswdFileBackend::removeUser(const std::string& user) noexcept {
    return edit([&] { return editor_.removeUser(toLower(user)); });
}

api::WriteAnswer PasswdFileBackend::listUsers(const std::string& domain, std::vector<api::UserInfo>& out) noexcept {
    return edit([&] { return editor_.listUsers(toLower(domain), out); });
}

api::WriteAnswer PasswdFileBackend::showUser(const std::string& address, api::UserInfo& out) noexcept {
    return edit([&] { return editor_.showUser(toLower(address), out); });
}

}  // namespace postern::plugins::passwdfile

namespace postern::plugins::passwdfile {

api::WriteAnswer PasswdFileBackend::addAppPassword(const api::NewAppPassword& app) noexcept {
    return edit([&] { return editor_.addAppPassword(app); });
}

api::WriteAnswer PasswdFileBackend::listAppPasswords(const std::string& user, bool& requireAppPassword,
                                                     std::vector<api::AppPasswordInfo>& out) noexcept {
    return edit([&] { return editor_.listAppPasswords(toLower(user), requireAppPassword, out); });
}

api::WriteAnswer PasswdFileBackend::revokeAppPassword(const std::string& user, const std::string& id) noexcept {
    return edit([&] { return editor_.revokeAppPassword(toLower(user), id); });
}

api::WriteAnswer PasswdFileBackend::setRequireAppPassword(const std::string& user, bool on) noexcept {
    return edit([&] { return editor_.setRequireAppPassword(toLower(user), on); });
}

}  // namespace postern::plugins::passwdfile
