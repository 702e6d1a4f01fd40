#include "store/MaildirStore.h"
#include "store/DovecotUidlist.h"

#include "core/MailboxLocation.h"

#include "core/EventLine.h"
#include "queue/FileOps.h"

#include <Poco/DigestEngine.h>
#include <Poco/Logger.h>
#include <Poco/SHA1Engine.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <vector>

namespace postern::store {

using queue::errnoText;
using queue::fsyncDirectory;

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.store"); }

constexpr unsigned DirMode = 0700;
constexpr const char* LockName = "postern.lock";

std::string sanitizeHostname(std::string host) {
    // Maildir: '/' and ':' cannot appear in the host part of a name.
    std::string out;
    for (char c : host) {
        if (c == '/') out += "\\057";
        else if (c == ':') out += "\\072";
        else if (static_cast<unsigned char>(c) > 0x20 && c != 0x7f) out += c;
    }
    return out.empty() ? "localhost" : out;
}

std::uint64_t leadingNumber(std::string_view s, std::size_t& pos) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data() + pos, s.data() + s.size(), v);
    pos = static_cast<std::size_t>(p - s.data());
    return ec == std::errc() ? v : 0;
}

// RFC 1939 7: a unique-id is 1..70 characters in 0x21..0x7E. Our own names fit unless
// the host name is very long; anything else gets a stable digest of its base name.
std::string uidlFor(const std::string& base) {
    bool fits = !base.empty() && base.size() <= 70 &&
                std::all_of(base.begin(), base.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
    if (fits) return base;
    Poco::SHA1Engine sha;
    sha.update(base);
    return Poco::DigestEngine::digestToHex(sha.digest());
}

struct CurFile {
    std::string name;  // file name in `dir`
    const char* dir = "/cur";  // "/new" for a message that could not be moved to cur/ (served from there)
    std::string base;  // before ':'
    bool lfStored = false;    // LF line ends (W= in the name, or bare LFs found): sent as CRLF
    bool sharedBase = false;  // another file of this maildrop has the same base name
    std::uint64_t seconds = 0;
    std::uint64_t micros = 0;
    std::uint64_t counter = 0;
    core::MaildropEntry entry;
};

// "<sec>.M<usec>..." -> delivery time for sorting; other Maildir writers' names sort by
// their leading seconds and then by name.
void parseTime(CurFile& f) {
    std::size_t pos = 0;
    f.seconds = leadingNumber(f.base, pos);
    if (f.base.compare(pos, 2, ".M") == 0) {
        pos += 2;
        f.micros = leadingNumber(f.base, pos);
        if (f.base.compare(pos, 1, "P") == 0) {
            ++pos;
            leadingNumber(f.base, pos);
        }
        if (f.base.compare(pos, 1, "Q") == 0) {
            ++pos;
            f.counter = leadingNumber(f.base, pos);
        }
    }
}

std::optional<std::uint64_t> sizeField(std::string_view base, std::string_view field) {
    auto p = base.find(field);
    if (p == std::string_view::npos) return std::nullopt;
    std::uint64_t v = 0;
    const char* b = base.data() + p + field.size();
    const char* e = base.data() + base.size();
    auto [q, ec] = std::from_chars(b, e, v);
    if (ec != std::errc() || q == b || (q != e && *q != ',')) return std::nullopt;
    return v;
}

// The size RETR sends. Dovecot names its files "...,S=<file size>,W=<size with CRLF>" and
// stores LF line ends: W= is the one POP3 reports. Postern writes CRLF files with S= only.
std::optional<std::uint64_t> sizeFromName(std::string_view base) {
    if (auto w = sizeField(base, ",W=")) return w;
    return sizeField(base, ",S=");
}

// Postern's own names (MaildirStore::uniqueName): "<sec>.M<usec>P<pid>Q<counter>.<host>,S=..".
// Its files have CRLF line ends (a BINARYMIME body may hold bare LFs: sent byte for byte).
// Another writer's S=-only name -- Courier's maildrop and deliverquota ("<sec>.M<usec>P<pid>
// V<dev>I<ino>.<host>,S=<size>"), where S= is the size of a file with LF line ends -- is
// not: such a file is checked for bare LFs like one without any size in its name.
bool isOwnName(std::string_view base) {
    auto digits = [&base](std::size_t& i) {
        const std::size_t from = i;
        while (i < base.size() && base[i] >= '0' && base[i] <= '9') ++i;
        return i > from;
    };
    std::size_t i = 0;
    if (!digits(i) || i >= base.size() || base[i++] != '.') return false;
    for (char c : {'M', 'P', 'Q'})
        if (i >= base.size() || base[i++] != c || !digits(i)) return false;
    return i < base.size() && base[i] == '.';
}

// Block size of a message read for RETR, and of a foreign file's count of bare LFs. On the
// heap: POP3 session threads may have small stacks (listener.*.stack_size).
constexpr std::size_t ReadBlock = 65536;

// LFs not preceded by CR, counted or converted to CRLF block by block: each is two octets on
// the wire (RFC 1939 11). `prev` carries the last octet of one block to the next.
struct BareLineFeeds {
    char prev = '\0';
    std::uint64_t count(std::string_view block) {
        std::uint64_t bare = 0;
        for (char c : block) {
            if (c == '\n' && prev != '\r') ++bare;
            prev = c;
        }
        return bare;
    }
    // Dovecot (W= in the name) and the delivery agents that put no size in the name
    // (Postfix's local and virtual, procmail, fetchmail) store LF line ends; POP3 sends every
    // line with CRLF (RFC 1939 3).
    void toCrlf(std::string& block) {
        char last = prev;
        const std::uint64_t bare = count(block);
        if (bare == 0) return;
        std::string out;
        out.reserve(block.size() + bare);
        for (char c : block) {
            if (c == '\n' && last != '\r') out += '\r';
            out += c;
            last = c;
        }
        block = std::move(out);
    }
};

// The size POP3 reports for a file whose name gives none (another delivery agent wrote it):
// the file's size with every bare LF counted as two octets, as RFC 1939 11 describes for a
// maildrop stored with LF line ends. Finding the bare LFs reads the file, so the result is
// kept in an extended attribute of the file ("<file size> <size with CRLF>"; Maildir files
// are never changed in place, and the file size is checked). Where attributes cannot be
// written (another owner, a file system without user attributes) the file is read at every
// login, as Dovecot does without its index. nullopt with errno set: not readable (ENOENT:
// gone; EINVAL or ELOOP: not a regular file).
constexpr const char* CrlfSizeAttribute = "user.postern.crlf_size";

std::optional<std::uint64_t> foreignCrlfSize(const std::string& path, std::uint64_t fileSize) {
    char cached[64];
    const ssize_t n = ::lgetxattr(path.c_str(), CrlfSizeAttribute, cached, sizeof cached);
    if (n > 0) {
        std::uint64_t was = 0, crlf = 0;
        const char* e = cached + n;
        auto [p, ec] = std::from_chars(cached, e, was);
        if (ec == std::errc() && p != e && *p == ' ') {
            auto [q, ec2] = std::from_chars(p + 1, e, crlf);
            if (ec2 == std::errc() && q == e && was == fileSize && crlf >= was) return crlf;
        }
    }
    // Counted in blocks: a large foreign file (a backup dropped into cur/) is never held in
    // memory whole just to be listed.
    const int fd = queue::openRegularFile(path);
    if (fd < 0) return std::nullopt;
    std::uint64_t bytes = 0, bare = 0;
    BareLineFeeds lf;
    std::vector<char> block(ReadBlock);
    for (;;) {
        const ssize_t n = queue::readSome(fd, block.data(), block.size());
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            errno = err;
            return std::nullopt;
        }
        if (n == 0) break;
        bare += lf.count(std::string_view(block.data(), static_cast<std::size_t>(n)));
        bytes += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    const std::uint64_t crlf = bytes + bare;
    const std::string value = std::to_string(bytes) + " " + std::to_string(crlf);
    (void)::lsetxattr(path.c_str(), CrlfSizeAttribute, value.data(), value.size(), 0);
    return crlf;
}

bool listNames(const std::string& dir, std::vector<std::string>& names) {
    if (!queue::listDirectory(dir, names)) return false;
    // Maildir: names starting with '.' are not messages.
    std::erase_if(names, [](const std::string& n) { return n.empty() || n[0] == '.'; });
    return true;
}

// One message file of an open maildrop, read in blocks.
class FileStream : public core::MessageStream {
public:
    FileStream(int fd, std::string path, bool lfStored) : fd_(fd), path_(std::move(path)), lfStored_(lfStored) {}
    ~FileStream() override {
        if (fd_ >= 0) ::close(fd_);
    }
    FileStream(const FileStream&) = delete;
    FileStream& operator=(const FileStream&) = delete;

    bool next(std::string& out) override {
        out.clear();
        if (fd_ < 0) return false;  // a read failed before
        out.resize(ReadBlock);
        const ssize_t n = queue::readSome(fd_, out.data(), out.size());
        if (n < 0) {
            const int err = errno;
            out.clear();
            logger().error(core::EventLine("store.read_fail").add("path", path_).text("error", errnoText(err)).str());
            ::close(fd_);
            fd_ = -1;
            return false;
        }
        out.resize(static_cast<std::size_t>(n));
        if (lfStored_) lf_.toCrlf(out);
        return true;
    }

private:
    int fd_;  // -1 once a read failed
    std::string path_;
    bool lfStored_;
    BareLineFeeds lf_;
};

// The open, locked maildrop of one POP3 session.
class MaildirMaildrop : public core::Maildrop {
public:
    MaildirMaildrop(std::string maildir, int lockFd, std::vector<CurFile> files)
        : maildir_(std::move(maildir)), lockFd_(lockFd), files_(std::move(files)) {
        entries_.reserve(files_.size());
        for (const auto& f : files_) entries_.push_back(f.entry);
    }
    ~MaildirMaildrop() override {
        // Closing the only descriptor of this open file description drops the flock.
        ::close(lockFd_);
    }
    MaildirMaildrop(const MaildirMaildrop&) = delete;
    MaildirMaildrop& operator=(const MaildirMaildrop&) = delete;

    const std::vector<core::MaildropEntry>& entries() const override { return entries_; }

    core::MessageRead openMessage(std::size_t index, core::MessageStreamPtr& out) override {
        if (index >= files_.size()) return core::MessageRead::Failed;
        CurFile& f = files_[index];
        std::string path = maildir_ + f.dir + "/" + f.name;
        int fd = queue::openRegularFile(path);
        int err = fd >= 0 ? 0 : errno;
        if (err == ENOENT && !f.base.empty() && !f.sharedBase) {
            // Renamed by another Maildir program for its flags (":2,S"), as expunge() knows,
            // or moved from new/ to cur/ by one (an IMAP server sharing the Maildir).
            // (Not for a base name two files share: the other one is another message.)
            std::vector<std::string> names;
            if (!listNames(maildir_ + "/cur", names)) {
                err = errno;
                path = maildir_ + "/cur";
            }
            const bool wasNew = f.dir != std::string_view("/cur");
            for (auto& n : names) {
                if ((wasNew && n == f.base) ||
                    (n.size() > f.base.size() && n.compare(0, f.base.size(), f.base) == 0 && n[f.base.size()] == ':')) {
                    path = maildir_ + "/cur/" + n;
                    fd = queue::openRegularFile(path);
                    err = fd >= 0 ? 0 : errno;
                    if (err == 0) {
                        f.name = std::move(n);
                        f.dir = "/cur";
                    }
                    break;
                }
            }
        }
        if (err != 0) {
            if (err == ENOENT) return core::MessageRead::Gone;
            logger().error(core::EventLine("store.read_fail").add("path", path).text("error", errnoText(err)).str());
            // A symlink (ELOOP under O_NOFOLLOW) or a FIFO/device: it will never be readable.
            return err == ELOOP || err == EINVAL ? core::MessageRead::NotAFile : core::MessageRead::Failed;
        }
        // Line ends converted only where the name says so (W=) or where the file was found to
        // have bare LFs when it was listed: Postern's own files (S= only) are sent byte for
        // byte, a BINARYMIME body included.
        out = std::make_unique<FileStream>(fd, std::move(path), f.lfStored);
        return core::MessageRead::Ok;
    }

    bool expunge(const std::vector<std::size_t>& indexes) override {
        bool ok = true;
        // Names in cur/ now, read once if a file has moved: another Maildir program (an IMAP
        // server sharing the Maildir) may have renamed it to change its flags (":2,S").
        std::optional<std::vector<std::string>> current;
        // 0 (removed) or the errno of unlink(2), saved before anything is logged.
        auto unlinkOne = [&](const std::string& path) {
            if (::unlink(path.c_str()) == 0) return 0;
            const int err = errno;
            if (err != ENOENT)
                logger().error(
                    core::EventLine("store.expunge_fail").add("path", path).text("error", errnoText(err)).str());
            return err;
        };
        bool fromNew = false;
        for (std::size_t i : indexes) {
            if (i >= files_.size()) continue;
            const bool inNew = files_[i].dir != std::string_view("/cur");
            fromNew = fromNew || inNew;
            const int err = unlinkOne(maildir_ + files_[i].dir + "/" + files_[i].name);
            if (err == 0) continue;
            const std::string& base = files_[i].base;
            if (err != ENOENT || base.empty() || files_[i].sharedBase) {
                ok = ok && err == ENOENT;
                continue;
            }
            if (!current) {
                current.emplace();
                if (!listNames(maildir_ + "/cur", *current)) {
                    const int scanErr = errno;
                    logger().error(core::EventLine("store.expunge_fail")
                                       .add("path", maildir_ + "/cur")
                                       .add("step", "scan")
                                       .text("error", errnoText(scanErr))
                                       .str());
                    current.reset();
                    ok = false;
                    continue;
                }
            }
            // The same message under other flags; none: removed by hand or another tool,
            // which is what we wanted anyway.
            for (const auto& n : *current) {
                if ((inNew && n == base) ||
                    (n.size() > base.size() && n.compare(0, base.size(), base) == 0 && n[base.size()] == ':')) {
                    const int e = unlinkOne(maildir_ + "/cur/" + n);
                    if (e != 0 && e != ENOENT) ok = false;
                }
            }
        }
        // The deletion is acknowledged to the client with +OK: make it durable first.
        for (const char* sub : {"/cur", "/new"}) {
            if (sub == std::string_view("/new") && !fromNew) continue;
            if (!fsyncDirectory(maildir_ + sub)) {
                logger().error(core::EventLine("store.expunge_fail")
                                   .add("path", maildir_ + sub)
                                   .add("step", "fsync")
                                   .text("error", errnoText(errno))
                                   .str());
                ok = false;
            }
        }
        return ok;
    }

private:
    std::string maildir_;
    int lockFd_;
    std::vector<CurFile> files_;
    std::vector<core::MaildropEntry> entries_;
};

}  // namespace

MaildirStore::MaildirStore(std::string mailRoot, std::string hostname) : mailRoot_(std::move(mailRoot)) {
    while (mailRoot_.size() > 1 && mailRoot_.back() == '/') mailRoot_.pop_back();
    if (hostname.empty()) {
        char buf[256] = {};
        if (::gethostname(buf, sizeof buf - 1) == 0) hostname = buf;
    }
    hostname_ = sanitizeHostname(hostname);
}

std::optional<std::string> MaildirStore::maildirPath(const std::string& mailbox) const {
    // The location comes from a backend (LDAP attribute, SQL column): never let it name
    // a directory outside the mail root.
    const auto location = core::normalizeMailboxLocation(mailbox);  // nor the spool
    if (!location) return std::nullopt;
    return mailRoot_ + "/" + *location;
}

bool MaildirStore::ensureMaildir(const std::string& maildir) {
    for (const char* sub : {"/tmp", "/new", "/cur"})
        if (!queue::makeDirectories(maildir + sub, DirMode)) return false;
    return true;
}

namespace {
// The modification time of `dir`; {0,0} when it does not exist. false on another error.
bool dirTime(const std::string& dir, timespec& out) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) == 0) {
        out = st.st_mtim;
        return true;
    }
    out = {};
    return errno == ENOENT;
}

bool sameTime(const timespec& a, const timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }
}  // namespace

std::optional<std::uint64_t> MaildirStore::usedBytes(const std::string& mailbox) const {
    auto maildir = maildirPath(mailbox);
    if (!maildir) return std::nullopt;  // refused at RCPT already (rcpt.bad_mailbox)
    const std::string newDir = *maildir + "/new", curDir = *maildir + "/cur";
    Usage now;
    if (!dirTime(newDir, now.newTime) || !dirTime(curDir, now.curTime)) {
        logger().error(core::EventLine("store.usage_fail").add("path", *maildir).text("error", errnoText(errno)).str());
        return std::nullopt;
    }
    if (usageCacheSize_ > 0) {
        std::lock_guard lock(usageMutex_);
        auto it = usage_.find(*maildir);
        if (it != usage_.end() && sameTime(it->second.newTime, now.newTime) && sameTime(it->second.curTime, now.curTime))
            return it->second.bytes;
    }
    for (const std::string& dir : {newDir, curDir}) {
        std::vector<std::string> names;
        if (!listNames(dir, names)) {
            if (errno == ENOENT) continue;  // not made yet: nothing stored
            logger().error(core::EventLine("store.usage_fail").add("path", dir).text("error", errnoText(errno)).str());
            return std::nullopt;
        }
        for (const auto& n : names) {
            // The file's own size: S= (Postern, Dovecot), not W= (the size on the wire).
            if (auto size = sizeField(std::string_view(n).substr(0, n.find(':')), ",S=")) {
                now.bytes += *size;
                continue;
            }
            struct stat st{};
            if (::lstat((dir + "/" + n).c_str(), &st) != 0) {
                if (errno == ENOENT) continue;  // fetched and deleted meanwhile
                logger().error(core::EventLine("store.usage_fail").add("path", dir + "/" + n).text("error", errnoText(errno)).str());
                return std::nullopt;
            }
            if (S_ISREG(st.st_mode)) now.bytes += static_cast<std::uint64_t>(st.st_size);
        }
    }
    // Remembered with the times read before the count: a change during it shows as a newer
    // time next time. Not when a directory changed within the last second, where a change in
    // the same clock tick would leave its time as it was.
    const std::time_t settled = std::time(nullptr) - 1;
    if (usageCacheSize_ > 0 && now.newTime.tv_sec < settled && now.curTime.tv_sec < settled) {
        std::lock_guard lock(usageMutex_);
        if (usage_.size() >= usageCacheSize_) usage_.clear();
        usage_[*maildir] = now;
    }
    return now.bytes;
}

std::string MaildirStore::uniqueName(std::uint64_t size) const {
    static std::atomic<std::uint64_t> counter{0};
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(now);
    auto usec = std::chrono::duration_cast<std::chrono::microseconds>(now - secs).count();
    return std::to_string(secs.count()) + ".M" + std::to_string(usec) + "P" + std::to_string(::getpid()) + "Q" +
           std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "." + hostname_ +
           ",S=" + std::to_string(size);
}

bool MaildirStore::deliver(const std::string& source, std::uint64_t size, const std::string& mailbox,
                           std::string& placedPath, bool syncDirectory) {
    auto maildir = maildirPath(mailbox);
    if (!maildir) {
        logger().error(
            core::EventLine("store.deliver_fail").add("mailbox", mailbox).add("error", "invalid_location").str());
        return false;
    }
    // The Maildir is made (tmp/, new/, cur/) only when placing the file finds a directory
    // missing (ENOENT): an existing one costs no stat(2) per delivery (it cost seven per
    // message in S1'). Returns false (logged) if it cannot be made.
    bool ensured = false;
    auto makeMissingMaildir = [&] {
        ensured = true;
        if (ensureMaildir(*maildir)) return true;
        logger().error(core::EventLine("store.deliver_fail")
                           .add("maildir", *maildir)
                           .add("step", "mkdir")
                           .text("error", errnoText(errno))
                           .str());
        return false;
    };
    // Made before any link: once a name exists in new/, nothing up to the return may
    // allocate (a bad_alloc there would leave a link the caller's undo does not know of).
    const std::string newDir = *maildir + "/new";
    for (int tries = 0; tries < 8; ++tries) {
        std::string name = uniqueName(size);
        std::string target = newDir + "/" + name;
        bool placed = false;
        bool linked = false;  // same file system as `source`
        const bool linkedNow = ::link(source.c_str(), target.c_str()) == 0;
        const int linkError = errno;
        if (linkedNow) {
            placed = true;
            linked = true;
        } else if (linkError == EEXIST && queue::sameFile(source, target)) {
            // Our own link, answered EEXIST (an NFS LINK retransmitted after it was done):
            // placed, not a name clash (linking again would deliver the message twice).
            placed = true;
            linked = true;
        } else if (linkError == EEXIST) {
            continue;
        } else if ((errno = linkError) == ENOENT && !ensured) {
            if (!makeMissingMaildir()) return false;
            continue;
        } else if ((errno == EXDEV || errno == EPERM) && spool_ && !spool_->directory().empty() &&
                   source.compare(0, spool_->directory().size() + 1, spool_->directory() + "/") != 0) {
            // Another file system than the source: a synced copy in the spool (on the mail
            // root's file system), linked from there; a crash leaves the copy only in the
            // spool, which the next start clears.
            std::string copy = spool_->directory() + "/" + name + ".part";
            if (!queue::copyFileSynced(source, copy)) {
                if (errno == EEXIST) continue;
                logger().error(core::EventLine("store.deliver_fail")
                                   .add("path", copy)
                                   .add("step", "copy")
                                   .text("error", errnoText(errno))
                                   .str());
                return false;
            }
            std::string placed;
            bool ok = deliver(copy, size, mailbox, placed, syncDirectory);
            ::unlink(copy.c_str());
            if (ok) placedPath = std::move(placed);  // noexcept: the caller learns of the link
            return ok;
        } else if (errno == EXDEV || errno == EPERM) {
            // The maildir is on another file system than the spool (or there is no spool):
            // Maildir's own protocol, write tmp/ then rename into new/. A crash in between
            // leaves the file in tmp/ until cleanTmp() finds it old enough.
            cleanTmp(*maildir);
            std::string tmp = *maildir + "/tmp/" + name;
            if (!queue::copyFileSynced(source, tmp)) {
                if (errno == EEXIST) continue;
                if (errno == ENOENT && !ensured) {
                    if (!makeMissingMaildir()) return false;
                    continue;
                }
                logger().error(core::EventLine("store.deliver_fail")
                                   .add("path", tmp)
                                   .add("step", "copy")
                                   .text("error", errnoText(errno))
                                   .str());
                return false;
            }
            // Never over another file: a name can clash with another writer's (other nodes
            // on a shared mail root, a foreign MDA).
            if (!queue::renameNoReplace(tmp, target)) {
                int saved = errno;
                ::unlink(tmp.c_str());
                if (saved == EEXIST) continue;  // a new name
                logger().error(core::EventLine("store.deliver_fail")
                                   .add("path", target)
                                   .add("step", "rename")
                                   .text("error", errnoText(saved))
                                   .str());
                return false;
            }
            placed = true;
        } else {
            logger().error(core::EventLine("store.deliver_fail")
                               .add("path", target)
                               .add("step", "link")
                               .text("error", errnoText(errno))
                               .str());
            return false;
        }
        if (placed) {
            // The 250 depends on the directory entry being on disk, not just the data. With
            // group commit the caller's shared sync of source's file system does that.
            if ((syncDirectory || !linked) && !fsyncDirectory(newDir)) {
                int saved = errno;
                ::unlink(target.c_str());
                logger().error(core::EventLine("store.deliver_fail")
                                   .add("path", target)
                                   .add("step", "fsync")
                                   .text("error", errnoText(saved))
                                   .str());
                return false;
            }
            placedPath = std::move(target);  // noexcept
            return true;
        }
    }
    logger().error(core::EventLine("store.deliver_fail").add("maildir", *maildir).add("error", "name_clash").str());
    return false;
}

std::size_t MaildirStore::cleanTmp(const std::string& maildir) const {
    if (tmpCleanupAge_.count() <= 0) return 0;
    std::string tmpDir = maildir + "/tmp";
    DIR* d = ::opendir(tmpDir.c_str());
    if (!d) return 0;
    auto cutoff = std::chrono::system_clock::now() - tmpCleanupAge_;
    std::size_t removed = 0;
    while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        struct stat st{};
        if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) continue;
        // mtime: a writer still at work keeps touching its file; a dead one does not.
        if (std::chrono::system_clock::from_time_t(st.st_mtime) > cutoff) continue;
        if (::unlinkat(::dirfd(d), e->d_name, 0) == 0) ++removed;
    }
    ::closedir(d);
    if (removed > 0)
        logger().notice(core::EventLine("store.tmp_cleanup").add("maildir", maildir).add("removed", removed).str());
    return removed;
}

core::MaildropStatus MaildirStore::open(const std::string& mailbox, core::MaildropPtr& out) {
    auto maildir = maildirPath(mailbox);
    if (!maildir) {
        logger().error(
            core::EventLine("store.open_fail").add("mailbox", mailbox).add("error", "invalid_location").str());
        return core::MaildropStatus::TempFail;
    }
    // A mailbox nobody has written to yet opens as empty; creating it here also gives
    // the lock file a home.
    if (!ensureMaildir(*maildir)) {
        logger().error(core::EventLine("store.open_fail")
                           .add("maildir", *maildir)
                           .add("step", "mkdir")
                           .text("error", errnoText(errno))
                           .str());
        return core::MaildropStatus::TempFail;
    }
    std::string lockPath = *maildir + "/" + LockName;
    int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        logger().error(core::EventLine("store.open_fail")
                           .add("path", lockPath)
                           .add("step", "lock")
                           .text("error", errnoText(errno))
                           .str());
        return core::MaildropStatus::TempFail;
    }
    // RFC 1939 4: the server acquires an exclusive-access lock on the maildrop.
    int rc;
    do rc = ::flock(fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int err = errno;
        ::close(fd);
        if (err == EWOULDBLOCK) return core::MaildropStatus::InUse;
        logger().error(core::EventLine("store.open_fail")
                           .add("path", lockPath)
                           .add("step", "flock")
                           .text("error", errnoText(err))
                           .str());
        return core::MaildropStatus::TempFail;
    }
    // From here the lock is held: released on every way out until the maildrop owns it (also
    // when something below throws, or the mailbox would answer [IN-USE] until a restart).
    struct LockHolder {
        int fd;
        ~LockHolder() {
            if (fd >= 0) ::close(fd);
        }
    } lock{fd};
    auto fail = [&](const std::string& step, const std::string& path) {
        int err = errno;
        logger().error(
            core::EventLine("store.open_fail").add("path", path).add("step", step).text("error", errnoText(err)).str());
        return core::MaildropStatus::TempFail;
    };

    // Like Dovecot when it syncs a mailbox: what a crashed writer left in tmp/ goes. One
    // readdir of a directory that is normally empty, only for mailboxes in use.
    cleanTmp(*maildir);

    // new/ -> cur/ with the "seen by a reader" suffix. A crash in between leaves a file
    // in new/ or in cur/ (rename is atomic), never neither; no fsync needed.
    std::vector<std::string> names;
    std::string newDir = *maildir + "/new", curDir = *maildir + "/cur";
    if (!listNames(newDir, names)) return fail("scan", newDir);
    std::vector<std::string> stuck;  // could not be moved: served from new/ this time
    for (auto& n : names) {
        std::string to = curDir + "/" + n + (n.find(':') == std::string::npos ? ":2," : "");
        if (queue::renameNoReplace(newDir + "/" + n, to) || errno == ENOENT) continue;
        // A message of that name is in cur/ already (a clash between writers): this one
        // stays in new/, unserved but never lost, and the operator is told.
        if (errno == EEXIST) {
            logger().warning(core::EventLine("store.name_clash").add("path", newDir + "/" + n).str());
            continue;
        }
        // Anything else (ENOSPC or EDQUOT when cur/ must grow on a full disk, a foreign name
        // too long for the ":2," suffix) must not keep the user out of the mailbox: on a full
        // disk, fetching and deleting is how room is made. Served from new/.
        logger().warning(
            core::EventLine("store.rename_fail").add("path", newDir + "/" + n).text("error", errnoText(errno)).str());
        stuck.push_back(std::move(n));
    }

    if (!listNames(curDir, names)) return fail("scan", curDir);
    // A mailbox migrated from Dovecot keeps the UIDLs its clients know (store.dovecot_uidlist).
    std::unordered_map<std::string, std::string> migrated;
    if (dovecotUidlist_) {
        std::string text;
        const std::string uidlist = *maildir + "/dovecot-uidlist";
        if (queue::readRegularFile(uidlist, text)) migrated = dovecotUidls(text);
        else if (errno != ENOENT)
            logger().warning(
                core::EventLine("store.uidlist_fail").add("path", uidlist).text("error", errnoText(errno)).str());
    }
    std::vector<CurFile> files;
    files.reserve(names.size() + stuck.size());
    const std::size_t inCur = names.size();
    for (auto& n : stuck) names.push_back(std::move(n));
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::string& n = names[i];
        CurFile f;
        if (i >= inCur) f.dir = "/new";
        f.base = n.substr(0, n.find(':'));
        f.name = std::move(n);
        parseTime(f);
        auto size = sizeFromName(f.base);
        f.lfStored = sizeField(f.base, ",W=").has_value();
        if (!f.lfStored && !isOwnName(f.base)) size.reset();  // Courier's S= is not the size in CRLF
        if (!size) {
            // Written by another delivery agent without S= or W= (Postfix's virtual, procmail),
            // or with an S= of a file with LF line ends (Courier): LF line ends, most likely.
            // Listed with its size in CRLF and sent with CRLF.
            const std::string path = *maildir + f.dir + "/" + f.name;
            struct stat st{};
            if (::lstat(path.c_str(), &st) != 0) {
                if (errno == ENOENT) continue;
                return fail("stat", path);
            }
            if (!S_ISREG(st.st_mode)) continue;  // a symlink, a FIFO: never a message
            size = foreignCrlfSize(path, static_cast<std::uint64_t>(st.st_size));
            if (!size) {
                const int err = errno;
                if (err == ENOENT || err == EINVAL || err == ELOOP) continue;
                // One unreadable file must not lock the user out of the whole mailbox:
                // listed with its file size; RETR of it answers for itself.
                logger().warning(core::EventLine("store.size_fail").add("path", path).text("error", errnoText(err)).str());
                size = static_cast<std::uint64_t>(st.st_size);
            }
            f.lfStored = *size != static_cast<std::uint64_t>(st.st_size);
        }
        auto dovecot = migrated.find(f.base);
        f.entry.uidl = dovecot != migrated.end() ? dovecot->second : uidlFor(f.base);
        f.entry.size = *size;
        files.push_back(std::move(f));
    }
    std::sort(files.begin(), files.end(), [](const CurFile& a, const CurFile& b) {
        if (a.seconds != b.seconds) return a.seconds < b.seconds;
        if (a.micros != b.micros) return a.micros < b.micros;
        if (a.counter != b.counter) return a.counter < b.counter;
        if (a.base != b.base) return a.base < b.base;
        return a.name < b.name;
    });
    // Two files of one base name (a restored backup beside the live copy, a tool that copied
    // instead of renaming): RFC 1939 7 wants unique ids that stay the same across sessions,
    // also when another program renames a file for its flags. The inode does: the file with
    // the lowest keeps the base name's id, each other one gets "<base>:<inode>" (a ':' never
    // appears in a base name, so it equals no other id). One stat per such file, only here.
    for (std::size_t i = 0; i < files.size();) {
        std::size_t j = i + 1;
        while (j < files.size() && files[j].base == files[i].base) ++j;
        if (j - i > 1) {
            std::vector<std::pair<ino_t, std::size_t>> inodes;
            for (std::size_t k = i; k < j; ++k) {
                files[k].sharedBase = true;
                struct stat st{};
                inodes.emplace_back(::lstat((*maildir + files[k].dir + "/" + files[k].name).c_str(), &st) == 0 ? st.st_ino : 0, k);
            }
            std::sort(inodes.begin(), inodes.end());
            for (std::size_t k = 1; k < inodes.size(); ++k) {
                CurFile& f = files[inodes[k].second];
                f.entry.uidl = uidlFor(f.base + ":" + std::to_string(inodes[k].first));
            }
        }
        i = j;
    }
    out = std::make_unique<MaildirMaildrop>(*maildir, fd, std::move(files));
    lock.fd = -1;  // the maildrop's now
    return core::MaildropStatus::Ok;
}

}  // namespace postern::store
