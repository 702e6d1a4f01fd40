#include "queue/OutboundQueue.h"

#include "core/EventLine.h"
#include "queue/FileOps.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <random>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::queue {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.queue"); }

constexpr unsigned DirMode = 0700;

std::uint64_t fileSize(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// One queue.enqueue_fail line; returns false for the caller's return, errno = error.
bool enqueueFailed(const std::string& id, const char* step, int error) {
    logger().error(
        core::EventLine("queue.enqueue_fail").add("id", id).add("step", step).text("error", errnoText(error)).str());
    errno = error;  // the caller's errno, whatever logging did to it
    return false;
}

}  // namespace

OutboundQueue::OutboundQueue(std::string queueDir, QueueLimits limits)
    : dir_(std::move(queueDir)), limits_(limits) {
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    for (const char* sub : {"incoming", "data", "envelope"}) {
        std::string p = dir_ + "/" + sub;
        if (!makeDirectories(p, DirMode))
            throw std::runtime_error("cannot create queue directory " + p + ": " + errnoText(errno));
    }
    rescan();
    // Last: a constructor that throws would leak them (no destructor runs).
    dataDirFd_ = ::open((dir_ + "/data").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    envelopeDirFd_ = ::open((dir_ + "/envelope").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

OutboundQueue::~OutboundQueue() {
    if (dataDirFd_ >= 0) ::close(dataDirFd_);
    if (envelopeDirFd_ >= 0) ::close(envelopeDirFd_);
}

bool OutboundQueue::syncDataDirectory() const {
    return dataDirFd_ >= 0 ? ::fsync(dataDirFd_) == 0 : fsyncDirectory(dir_ + "/data");
}

bool OutboundQueue::syncEnvelopeDirectory() const {
    return envelopeDirFd_ >= 0 ? ::fsync(envelopeDirFd_) == 0 : fsyncDirectory(dir_ + "/envelope");
}

void OutboundQueue::rescan() {
    std::vector<std::string> names;
    if (!listDirectory(dir_ + "/envelope", names))
        throw std::runtime_error("cannot read queue directory " + dir_ + "/envelope: " + errnoText(errno));
    QueueStats s;
    for (const auto& n : names) {
        if (!isValidId(n)) continue;
        ++s.messages;
        s.bytes += fileSize(dataPath(n));
    }
    std::lock_guard lock(mutex_);
    stats_ = s;
}

std::size_t OutboundQueue::recover() {
    std::size_t removed = 0;
    std::vector<std::string> names;
    if (listDirectory(incomingDirectory(), names)) {
        for (const auto& n : names)
            if (::unlink((incomingDirectory() + "/" + n).c_str()) == 0) ++removed;
    }
    if (listDirectory(dir_ + "/envelope", names)) {
        for (const auto& n : names)
            if (n.size() > 4 && n.front() == '.' && n.ends_with(".tmp") &&
                ::unlink((dir_ + "/envelope/" + n).c_str()) == 0)
                ++removed;
    }
    // A crash between placing data and renaming the envelope leaves data without an
    // envelope: it was never acknowledged (no 250), so it is garbage.
    if (listDirectory(dir_ + "/data", names)) {
        for (const auto& n : names) {
            if (::access(envelopePath(n).c_str(), F_OK) == 0) continue;
            if (::unlink(dataPath(n).c_str()) == 0) ++removed;
        }
    }
    if (removed > 0) {
        syncDataDirectory();
        logger().information(core::EventLine("queue.recover").add("dir", dir_).add("removed", removed).str());
    }
    rescan();
    return removed;
}

bool OutboundQueue::isFull() const {
    std::lock_guard lock(mutex_);
    return (limits_.maxBytes != 0 && stats_.bytes >= limits_.maxBytes) ||
           (limits_.maxMessages != 0 && stats_.messages >= limits_.maxMessages);
}

QueueStats OutboundQueue::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

std::string OutboundQueue::newId() {
    static std::atomic<std::uint32_t> counter{0};
    thread_local std::mt19937 rng{std::random_device{}()};
    auto secs = static_cast<std::uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    std::uint32_t count = counter.fetch_add(1, std::memory_order_relaxed) & 0xffffu;
    std::uint32_t random = rng() & 0xffffu;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%04x%04x", secs, count, random);
    return buf;
}

bool OutboundQueue::isValidId(std::string_view id) {
    return id.size() == 16 &&
           std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string OutboundQueue::incomingDirectory() const { return dir_ + "/incoming"; }
std::string OutboundQueue::dataPath(const std::string& id) const { return dir_ + "/data/" + id; }
std::string OutboundQueue::envelopePath(const std::string& id) const { return dir_ + "/envelope/" + id; }

bool OutboundQueue::enqueue(const std::string& source, std::uint64_t size, QueueEnvelope& envelope) {
    Source s{source};
    return enqueue(s, size, envelope);
}

bool OutboundQueue::enqueue(Source& source, std::uint64_t size, QueueEnvelope& envelope) {
    if (!isValidId(envelope.id)) envelope.id = newId();
    // Place the data under a fresh id; link(2), rename(2) with RENAME_NOREPLACE and O_EXCL
    // fail on a clash, which makes ids unique without a lock.
    bool placed = false;
    bool sameFile = false;  // the caller's file itself is in data/ (not a synced copy)
    bool tryMove = source.move;
    for (int tries = 0; tries < 8 && !placed; ++tries) {
        if (tries > 0) envelope.id = newId();
        std::string target = dataPath(envelope.id);
        if (tryMove) {
            if (::renameat2(AT_FDCWD, source.path.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0) {
                placed = sameFile = source.moved = true;
                break;
            }
            if (errno == EEXIST) continue;
            // A file system without RENAME_NOREPLACE, or data/ on another one than incoming/
            // (a mount point): link it, or copy it as below.
            if (errno != EINVAL && errno != ENOSYS && errno != EXDEV) break;
            tryMove = false;
        }
        if (::link(source.path.c_str(), target.c_str()) == 0) {
            placed = sameFile = true;
        } else if (errno == EXDEV || errno == EPERM) {
            // Different file system (or a file system without hard links): copy + fsync.
            if (copyFileSynced(source.path, target)) placed = true;
            else if (errno != EEXIST) break;
        } else if (errno != EEXIST) {
            break;
        }
    }
    if (!placed) {
        return enqueueFailed(envelope.id, "data", errno);
    }
    std::string data = dataPath(envelope.id);
    // The envelope's temp file is written and fsynced before data/ is: on ext4 (one journal)
    // that fsync commits the link too, and the directory's fsync then finds nothing left to
    // commit: two journal commits per message instead of three. The order that matters is
    // kept: data/ is durable before the envelope has its name.
    std::string tmp;
    bool ok = writeEnvelopeTemp(envelope, tmp, sameFile ? source.fd : -1);
    if (!ok || !syncDataDirectory() || !publishEnvelope(envelope.id, tmp)) {
        const int saved = errno;
        enqueueFailed(envelope.id, "envelope", saved);
        // Nothing of it stays (the id is this message's alone: its data link succeeded),
        // also when only the last directory fsync failed after the rename.
        if (!tmp.empty()) ::unlink(tmp.c_str());
        ::unlink(envelopePath(envelope.id).c_str());
        ::unlink(data.c_str());
        errno = saved;
        return false;
    }
    {
        std::lock_guard lock(mutex_);
        ++stats_.messages;
        stats_.bytes += size;
    }
    std::lock_guard listenerLock(listenerMutex_);
    if (enqueueListener_) enqueueListener_(envelope);
    return true;
}

void OutboundQueue::setEnqueueListener(std::function<void(const QueueEnvelope&)> listener) {
    std::lock_guard lock(listenerMutex_);
    enqueueListener_ = std::move(listener);
}

bool OutboundQueue::refreshStats() {
    try {
        rescan();
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

std::optional<QueueEnvelope> OutboundQueue::modifyEnvelope(const std::string& id,
                                                           const std::function<bool(QueueEnvelope&)>& change,
                                                           bool syncRemoval) {
    if (!isValidId(id)) return std::nullopt;
    std::lock_guard guard(modifyMutex_);
    // flock excludes posternctl (another process); the mutex excludes this process's
    // threads (flock on one open file description would not).
    int fd = ::open((dir_ + "/envelope.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return std::nullopt;
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    std::optional<QueueEnvelope> result;
    auto e = readEnvelope(id);
    if (e && change(*e)) {
        if (e->recipients.empty()) {
            // Delivered: a crash before envelope/ reaches the disk may bring the message
            // back and deliver it again (Postfix does not sync its removals either); an
            // fsync here would only trade a duplicate after a power loss for a journal
            // commit per delivered message. A deletion by the operator is synced.
            if (remove(id, syncRemoval)) result = *e;
        } else if (writeEnvelope(*e)) {
            result = *e;
        }
    }
    ::close(fd);  // releases the flock
    return result;
}

bool OutboundQueue::writeEnvelope(const QueueEnvelope& envelope) {
    std::string tmp;
    return writeEnvelopeTemp(envelope, tmp) && publishEnvelope(envelope.id, tmp);
}

bool OutboundQueue::writeEnvelopeTemp(const QueueEnvelope& envelope, std::string& tmp, int alsoSync) {
    tmp.clear();
    auto text = formatQueueEnvelope(envelope);
    if (!text) {
        errno = EINVAL;
        return false;
    }
    std::string path = dir_ + "/envelope/." + envelope.id + ".tmp";
    bool ok = writeFileSynced(path, *text, alsoSync);
    if (!ok && errno == EEXIST) {  // a leftover of an earlier crash for the same id
        ::unlink(path.c_str());
        ok = writeFileSynced(path, *text, alsoSync);
    }
    if (!ok) return false;
    tmp = std::move(path);
    return true;
}

bool OutboundQueue::publishEnvelope(const std::string& id, const std::string& tmp) {
    // rename(2) is atomic: readers see the old envelope or the new one, never a mix.
    if (::rename(tmp.c_str(), envelopePath(id).c_str()) != 0) {
        int saved = errno;
        ::unlink(tmp.c_str());
        errno = saved;
        return false;
    }
    return syncEnvelopeDirectory();
}

bool OutboundQueue::remove(const std::string& id, bool syncDirectory) {
    if (!isValidId(id)) return false;
    std::uint64_t size = fileSize(dataPath(id));
    bool existed = true;
    if (::unlink(envelopePath(id).c_str()) != 0) {
        if (errno != ENOENT) return false;
        existed = false;
    }
    // The data goes whatever the directory sync says: the envelope is gone, so the message
    // is no longer queued (review finding: a failed sync left its data behind for good).
    const bool synced = !existed || !syncDirectory || syncEnvelopeDirectory();
    const int syncErrno = errno;
    if (::unlink(dataPath(id).c_str()) != 0 && errno != ENOENT) {
        logger().warning(core::EventLine("queue.remove_data_fail").add("id", id).text("error", errnoText(errno)).str());
    }
    if (existed) {
        std::lock_guard lock(mutex_);
        stats_.messages -= std::min<std::uint64_t>(stats_.messages, 1);
        stats_.bytes -= std::min(stats_.bytes, size);
    }
    errno = syncErrno;
    return synced;
}

bool OutboundQueue::updateEnvelope(const QueueEnvelope& envelope) {
    if (!isValidId(envelope.id) || ::access(envelopePath(envelope.id).c_str(), F_OK) != 0) return false;
    return writeEnvelope(envelope);
}

std::optional<QueueEnvelope> OutboundQueue::readEnvelope(const std::string& id) const {
    if (!isValidId(id)) return std::nullopt;
    std::string text;
    if (!readFile(envelopePath(id), text)) return std::nullopt;
    auto e = parseQueueEnvelope(text);
    if (e && e->id != id) return std::nullopt;  // a file renamed by hand: do not trust it
    return e;
}

std::vector<QueueEntry> OutboundQueue::list() const {
    std::vector<QueueEntry> out;
    std::vector<std::string> names;
    if (!listDirectory(dir_ + "/envelope", names)) {
        logger().error(core::EventLine("queue.list_fail").add("dir", dir_).text("error", errnoText(errno)).str());
        return out;
    }
    for (const auto& n : names) {
        if (!isValidId(n)) continue;
        auto e = readEnvelope(n);
        if (!e) {
            // It may just have been removed by a worker; only complain if it is still there.
            if (::access(envelopePath(n).c_str(), F_OK) == 0)
                logger().warning(core::EventLine("queue.bad_envelope").add("id", n).str());
            continue;
        }
        out.push_back({std::move(*e), fileSize(dataPath(n))});
    }
    std::sort(out.begin(), out.end(), [](const QueueEntry& a, const QueueEntry& b) {
        return a.envelope.arrival != b.envelope.arrival ? a.envelope.arrival < b.envelope.arrival
                                                        : a.envelope.id < b.envelope.id;
    });
    return out;
}

}  // namespace postern::queue
