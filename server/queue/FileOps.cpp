#include "queue/FileOps.h"

#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::queue {

namespace {
// Closes an fd on scope exit without clobbering the errno the caller reports.
struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) {
            int saved = errno;
            ::close(fd);
            errno = saved;
        }
    }
};
}  // namespace

bool writeAll(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

bool fsyncDirectory(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    FdGuard guard{fd};
    return ::fsync(fd) == 0;
}

bool makeDirectories(const std::string& path, unsigned mode) {
    if (path.empty()) {
        errno = ENOENT;
        return false;
    }
    // The common case (every delivery to an existing Maildir) costs one stat(2): mkdir(2) is
    // tried only for what is missing, deepest existing ancestor first (it was one mkdir per
    // path component on every call: 36 system calls per delivered message in S1').
    struct stat st{};
    if (::stat(path.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return false;
        }
        return true;
    }
    if (errno != ENOENT) return false;
    std::string parent = path;
    while (!parent.empty() && parent.back() == '/') parent.pop_back();
    const auto slash = parent.rfind('/');
    if (slash != std::string::npos && slash > 0) {
        parent.resize(slash);
        if (!makeDirectories(parent, mode)) return false;
    }
    if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) return false;
    if (::stat(path.c_str(), &st) != 0) return false;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return false;
    }
    return true;
}

bool sameFile(const std::string& from, const std::string& to) {
    struct stat a{}, b{};
    return ::lstat(from.c_str(), &a) == 0 && ::lstat(to.c_str(), &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

bool renameNoReplace(const std::string& from, const std::string& to) {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
    int e = errno;
    if (e == EINVAL || e == ENOSYS) {  // no RENAME_NOREPLACE here (NFS, some FUSE)
        if (::link(from.c_str(), to.c_str()) == 0) {
            ::unlink(from.c_str());
            return true;
        }
        e = errno;
        if (e == EPERM || e == ENOTSUP || e == EOPNOTSUPP) {
            // No hard links either: a plain rename after a look (a race with another writer
            // of the same name is possible only here).
            struct stat st{};
            if (::lstat(to.c_str(), &st) == 0) {
                errno = EEXIST;
                return false;
            }
            return ::rename(from.c_str(), to.c_str()) == 0;
        }
    }
    if (e == EEXIST && sameFile(from, to)) {
        ::unlink(from.c_str());
        return true;
    }
    errno = e;
    return false;
}

bool copyFileSynced(const std::string& from, const std::string& to) {
    int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return false;
    FdGuard inGuard{in};
    int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) return false;
    bool ok = true;
    {
        FdGuard outGuard{out};
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(in, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                ok = false;
                break;
            }
            if (n == 0) break;
            if (!writeAll(out, buf, static_cast<std::size_t>(n))) {
                ok = false;
                break;
            }
        }
        if (ok && ::fsync(out) != 0) ok = false;
        if (ok) {
            ok = ::close(out) == 0;
            outGuard.fd = -1;
        }
    }
    if (!ok) {
        int saved = errno;
        ::unlink(to.c_str());
        errno = saved;
    }
    return ok;
}

namespace {
// Reads an open file to its end. A regular file is read as it was at fstat(2), without an
// extra read(2) to find the end (the queue's envelopes are replaced by rename, never
// appended to; Maildir files are never changed in place).
bool readOpen(int fd, const struct stat& st, std::string& out) {
    out.clear();
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        out.resize(static_cast<std::size_t>(st.st_size));
        std::size_t got = 0;
        while (got < out.size()) {
            ssize_t n = ::read(fd, out.data() + got, out.size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return false;
            if (n == 0) break;  // shorter than it was: what is there
            got += static_cast<std::size_t>(n);
        }
        out.resize(got);
        return true;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) return true;
        out.append(buf, static_cast<std::size_t>(n));
    }
}
}  // namespace

bool readFile(const std::string& path, std::string& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    FdGuard guard{fd};
    struct stat st{};
    if (::fstat(fd, &st) != 0) st.st_mode = 0;  // not known: read to the end
    return readOpen(fd, st, out);
}

bool readFileHead(const std::string& path, std::size_t limit, std::string& out, bool& truncated) {
    out.clear();
    truncated = false;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    FdGuard guard{fd};
    // Grown as the file is read (one octet past `limit` tells whether there is more), so a
    // large limit costs memory only for a file that large.
    char buf[65536];
    for (;;) {
        const std::size_t room = limit + 1 - out.size();
        if (room == 0) break;
        ssize_t n = ::read(fd, buf, std::min(sizeof buf, room));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    truncated = out.size() > limit;
    if (truncated) out.resize(limit);
    return true;
}

namespace {
// openRegularFile, with the fstat(2) result for readOpen.
int openRegular(const std::string& path, struct stat& st) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -1;
    const int err = ::fstat(fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (err == 0) return fd;
    ::close(fd);
    errno = err;
    return -1;
}
}  // namespace

bool readRegularFile(const std::string& path, std::string& out) {
    struct stat st{};
    const int fd = openRegular(path, st);
    if (fd < 0) return false;
    FdGuard guard{fd};
    return readOpen(fd, st, out);
}

int openRegularFile(const std::string& path, std::uint64_t* size) {
    struct stat st{};
    const int fd = openRegular(path, st);
    if (fd >= 0 && size) *size = static_cast<std::uint64_t>(st.st_size);
    return fd;
}

ssize_t readSome(int fd, char* buf, std::size_t size) {
    for (;;) {
        const ssize_t n = ::read(fd, buf, size);
        if (n >= 0 || errno != EINTR) return n;
    }
}

bool writeFileSynced(const std::string& path, const std::string& data, int alsoSync) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    bool ok = writeAll(fd, data.data(), data.size());
    if (ok && alsoSync >= 0) {
        ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        ok = ::fsync(alsoSync) == 0;
    }
    ok = ok && ::fsync(fd) == 0;
    int saved = errno;
    if (::close(fd) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        ::unlink(path.c_str());
        errno = saved;
    }
    return ok;
}

std::string errnoText(int err) {
    const char* name = strerrordesc_np(err);
    const char* abbrev = strerrorname_np(err);
    std::string s = abbrev ? abbrev : std::to_string(err);
    if (name) s += std::string(" (") + name + ")";
    return s;
}

bool listDirectory(const std::string& dir, std::vector<std::string>& names) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return false;
    names.clear();
    errno = 0;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
    }
    bool ok = errno == 0;
    ::closedir(d);
    return ok;
}

}  // namespace postern::queue
