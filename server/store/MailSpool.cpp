#include "store/MailSpool.h"

#include "core/EventLine.h"
#include "queue/FileOps.h"

#include <Poco/Logger.h>

#include <cerrno>
#include <chrono>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace postern::store {

using queue::errnoText;
using queue::listDirectory;

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.store"); }

constexpr unsigned DirMode = 0700;
constexpr const char* LockName = "lock";
// A directory without a lock file is a process between mkdir and creating the lock (a
// moment), or one that died right there: removed once it is this old.
constexpr auto LocklessGrace = std::chrono::minutes(10);
// Another node's directory (another writer name) is removed only once it has not changed for
// this long (each local delivery through it changes it): where
// the mail root's file system keeps flock(2) per host (NFS mounted nolock or with
// local_lock=flock), its free lock proves nothing, and removing a live node's directory made
// every local delivery on that node fail until its restart. A node gone for good (or a
// container that changed its host name) leaves only unacknowledged partial files.
constexpr auto ForeignGrace = std::chrono::hours(24 * 7);

std::string safeName(const std::string& s) {
    std::string out;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
        out += ok ? c : '_';
    }
    return out.empty() ? "localhost" : out;
}

int lockExclusive(int fd) {
    int rc;
    do rc = ::flock(fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    return rc;
}

// Removes the files in `dir` (the lock file last) and the directory. Returns files removed
// (the lock file not counted).
std::size_t removeTree(const std::string& dir) {
    std::size_t removed = 0;
    std::vector<std::string> names;
    if (listDirectory(dir, names)) {
        for (const auto& n : names) {
            if (n == LockName) continue;
            if (::unlink((dir + "/" + n).c_str()) == 0) ++removed;
        }
    }
    ::unlink((dir + "/" + LockName).c_str());
    ::rmdir(dir.c_str());
    return removed;
}

}  // namespace

MailSpool::MailSpool(std::string mailRoot, std::string hostname)
    : root_(std::move(mailRoot)), hostname_(safeName(hostname)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    root_ += "/";
    root_ += DirName;
}

MailSpool::~MailSpool() {
    if (lockFd_ < 0) return;
    // Clean stop: nothing in here is needed any more (every writer is gone).
    removeTree(dir_);
    ::close(lockFd_);
}

bool MailSpool::start(std::size_t& removed) {
    removed = 0;
    if (!queue::makeDirectories(root_, DirMode)) {
        logger().error(core::EventLine("store.spool_fail")
                           .add("dir", root_)
                           .add("step", "mkdir")
                           .text("error", errnoText(errno))
                           .str());
        return false;
    }
    if (!createOwn()) return false;
    removed = removeDead();
    queue::fsyncDirectory(root_);
    return true;
}

bool MailSpool::createOwn() {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    for (int attempt = 0; attempt < 8; ++attempt) {
        std::string dir = root_ + "/" + hostname_ + "-" + std::to_string(::getpid()) + "-" +
                          std::to_string(secs.count()) + "-" + std::to_string(attempt);
        if (::mkdir(dir.c_str(), DirMode) != 0) {
            if (errno == EEXIST) continue;
            logger().error(core::EventLine("store.spool_fail")
                               .add("dir", dir)
                               .add("step", "mkdir")
                               .text("error", errnoText(errno))
                               .str());
            return false;
        }
        std::string lock = dir + "/" + LockName;
        int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            // Another starting process may have judged the lockless directory dead already.
            if (errno == ENOENT) continue;
            logger().error(core::EventLine("store.spool_fail")
                               .add("path", lock)
                               .add("step", "open")
                               .text("error", errnoText(errno))
                               .str());
            ::rmdir(dir.c_str());
            return false;
        }
        if (lockExclusive(fd) != 0) {
            // Someone else is removing it as dead (between our open and flock).
            ::close(fd);
            continue;
        }
        struct stat st{};
        if (::fstat(fd, &st) != 0 || st.st_nlink == 0) {
            ::close(fd);  // removed before we got the lock: take another name
            continue;
        }
        dir_ = dir;
        device_ = st.st_dev;
        lockFd_ = fd;
        return true;
    }
    logger().error(
        core::EventLine("store.spool_fail").add("dir", root_).add("error", "no_directory_after_retries").str());
    return false;
}

std::size_t MailSpool::removeDead() {
    std::size_t removed = 0, dirs = 0;
    std::vector<std::string> names;
    if (!listDirectory(root_, names)) {
        logger().warning(
            core::EventLine("store.spool_recover_fail").add("dir", root_).text("error", errnoText(errno)).str());
        return 0;
    }
    auto ownName = dir_.substr(dir_.rfind('/') + 1);
    const std::string ownWriter = hostname_ + "-";
    std::size_t foreignKept = 0;
    for (const auto& n : names) {
        if (n == ownName) continue;
        std::string path = root_ + "/" + n;
        struct stat st{};
        if (::lstat(path.c_str(), &st) != 0) continue;
        if (!S_ISDIR(st.st_mode)) {  // not ours to keep: a stray file
            if (::unlink(path.c_str()) == 0) ++removed;
            continue;
        }
        const auto age = std::chrono::system_clock::now() - std::chrono::system_clock::from_time_t(st.st_mtime);
        if (n.rfind(ownWriter, 0) != 0 && age <= ForeignGrace) {
            ++foreignKept;
            continue;
        }
        int fd = ::open((path + "/" + LockName).c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT && age > LocklessGrace) {
                removed += removeTree(path);
                ++dirs;
            }
            continue;
        }
        if (lockExclusive(fd) == 0) {  // nobody holds it: its process is gone
            removed += removeTree(path);
            ++dirs;
        }
        ::close(fd);
    }
    if (dirs > 0 || removed > 0)
        logger().notice(core::EventLine("store.spool_recover")
                            .add("dir", root_)
                            .add("directories", dirs)
                            .add("removed", removed)
                            .add("other_nodes_kept", foreignKept)
                            .str());
    return removed;
}

}  // namespace postern::store
