#include "store/SpoolSink.h"

#include "core/EventLine.h"
#include "queue/FileOps.h"

#include <Poco/Logger.h>

#include <cerrno>
#include <chrono>
#include <atomic>
#include <exception>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::store {

using queue::errnoText;

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.store"); }

constexpr std::size_t BufferSize = 64 * 1024;

class SpoolWriter : public core::MessageWriter {
public:
    SpoolWriter(MaildirStore& store, queue::OutboundQueue& queue, core::Envelope envelope, std::string tempPath, int fd,
                const SpoolSink::DeliveredHook* delivered, GroupCommit* groupCommit)
        : store_(store), queue_(queue), envelope_(std::move(envelope)), tempPath_(std::move(tempPath)), fd_(fd),
          delivered_(delivered), groupCommit_(groupCommit) {
        buffer_.reserve(BufferSize);
    }
    SpoolWriter(const SpoolWriter&) = delete;
    SpoolWriter& operator=(const SpoolWriter&) = delete;

    ~SpoolWriter() override {
        if (fd_ >= 0) ::close(fd_);
        // Uncommitted (or failed): no trace may remain. After an Ok commit the temp is
        // already gone and this unlink fails harmlessly with ENOENT.
        if (!committed_ && !moved_) ::unlink(tempPath_.c_str());
    }

    bool write(const char* data, std::size_t size) override {
        if (failed_ || fd_ < 0) return false;
        size_ += size;
        if (buffer_.size() + size < BufferSize) {
            buffer_.append(data, size);
            return true;
        }
        if (!flush()) return false;
        if (size >= BufferSize) {
            if (!queue::writeAll(fd_, data, size)) return fail("write");
        } else {
            buffer_.append(data, size);
        }
        return true;
    }

    // The first `bytes` written are the mailboxes' Return-Path line, not for the queue.
    void markReturnPath(std::uint64_t bytes) { returnPathBytes_ = bytes; }

    core::SinkResult commit() override {
        core::SinkResult result;  // TempFail until every copy is durable
        if (failed_ || fd_ < 0 || committed_) return result;
        if (!flush()) return result;
        // A message also for remote recipients whose mailboxes' copies begin with Return-Path:
        // the queue's copy, without that line, is written before any mailbox sees the
        // message, so a failure here (a full disk) leaves no copy a POP3 client may have taken.
        struct QueueCopy {
            std::string path;
            int fd = -1;
            bool moved = false;
            ~QueueCopy() {
                if (fd >= 0) ::close(fd);
                if (!path.empty() && !moved) ::unlink(path.c_str());
            }
        } queueCopy;
        if (returnPathBytes_ > 0) {
            queueCopy.fd = copyWithout(returnPathBytes_, tempPath_ + ".queue");
            if (queueCopy.fd < 0) return result;
            queueCopy.path = tempPath_ + ".queue";
        }
        // Only for the queue: its enqueue fsyncs the data together with the envelope's temp
        // file (one journal commit for both on ext4). Write-back starts now.
        const bool queueSyncs = envelope_.localMailboxes.empty();
        // close(2) can report a deferred write error (NFS): check it before trusting the data.
        // A message only for the queue keeps its descriptor until the queue has fsynced it.
        auto closeFile = [this] {
            int fd = fd_;
            fd_ = -1;
            return ::close(fd) == 0 || fail("close");
        };
        std::vector<std::string> placed;
        auto undo = [&] {
            for (const auto& p : placed) {
                ::unlink(p.c_str());
                auto slash = p.rfind('/');
                queue::fsyncDirectory(p.substr(0, slash));
            }
        };
        placed.reserve(envelope_.localMailboxes.size());  // push_back below cannot throw
        auto placeAll = [&](bool syncDirectory) {
            for (const auto& mailbox : envelope_.localMailboxes) {
                std::string path;
                if (!store_.deliver(tempPath_, size_, mailbox, path, syncDirectory)) return false;
                placed.push_back(std::move(path));
            }
            return true;
        };
        if (groupCommit_) {
            // One wait for both barriers: the data durable before any name of it exists,
            // the names in new/ durable before the 250 (GroupCommit::syncAround).
            if (!placeGrouped(closeFile, placeAll)) {
                undo();
                return result;
            }
        } else {
            if (queueSyncs) {
                ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
            } else if (::fsync(fd_) != 0) {
                fail("fsync");
                return result;
            }
            if (!queueSyncs && !closeFile()) return result;
            if (!placeAll(/*syncDirectory=*/true)) {
                undo();
                return result;
            }
        }
        queue::QueueEnvelope qe;
        qe.id = queue::OutboundQueue::newId();
        if (!envelope_.remoteRecipients.empty()) {
            qe.arrival = std::chrono::system_clock::now();
            qe.sender = envelope_.sender;
            qe.recipients = envelope_.remoteRecipients;
            qe.clientIp = envelope_.client.host();
            qe.heloName = envelope_.heloName;
            // Whose mail it is: the AUTH user, or the POP3 user of the grant it was relayed on
            // (review finding: grant relays were queued as nobody's, so a held account's
            // queued mail still went out and its remote refusals never counted).
            qe.authUser = envelope_.authUser.empty() ? envelope_.grantUser : envelope_.authUser;
            qe.sessionId = envelope_.sessionId;
            qe.dsn = envelope_.dsn;
            qe.recipientDsn = envelope_.remoteDsn;
            qe.hold = envelope_.hold;
            qe.smtpUtf8 = envelope_.smtpUtf8;
            qe.requireTls = envelope_.requireTls;
            // Only for the queue: its file moves into data/ (no link and unlink) and is fsynced
            // through this descriptor.
            queue::OutboundQueue::Source source{tempPath_};
            source.fd = queueSyncs && !groupCommit_ ? fd_ : -1;
            source.move = queueSyncs;
            std::uint64_t queuedSize = size_;
            if (queueCopy.fd >= 0) {
                // The queue's own copy (without Return-Path): moved into data/ and fsynced
                // there through its descriptor.
                source.path = queueCopy.path;
                source.fd = queueCopy.fd;
                source.move = true;
                queuedSize = size_ - returnPathBytes_;
            }
            const bool queued = queue_.enqueue(source, queuedSize, qe);
            if (queueCopy.fd >= 0) queueCopy.moved = source.moved;
            else moved_ = source.moved;
            if (!queued) {
                failed_ = true;  // the writer is spent: a second commit() must not enqueue again
                undo();
                return result;
            }
        }
        if (fd_ >= 0) {  // its fsync succeeded, which reports what close(2) could
            ::close(fd_);
            fd_ = -1;
        }
        committed_ = true;
        // Every copy is durable: now the "delivered" reports (RFC 3461 NOTIFY=SUCCESS),
        // themselves stored through the sink, while the temp file still holds the message.
        if (!placed.empty() && !envelope_.localSuccessDsn.empty() && delivered_ && *delivered_)
            (*delivered_)(envelope_, qe.id, tempPath_);
        if (!moved_ && ::unlink(tempPath_.c_str()) != 0)
            logger().warning(core::EventLine::inSession(envelope_.sessionId, "store.temp_unlink_fail")
                                 .add("path", tempPath_)
                                 .text("error", errnoText(errno))
                                 .str());
        // The operator's line for this event is the session's message.accept (which names
        // the queue id and the local/remote split); this one is for debugging the store.
        if (logger().debug())
            logger().debug(core::EventLine::inSession(envelope_.sessionId, "store.accepted")
                                 .add("id", qe.id)
                                 .add("size", size_)
                                 .add("local", placed.size())
                                 .add("remote", envelope_.remoteRecipients.size())
                                 .str());
        result.status = core::SinkStatus::Ok;
        result.queueId = qe.id;
        return result;
    }

private:
    // The grouped path (local mailboxes on the committer's file system): starts this file's
    // write-back, then waits once for a batch that syncs the file system, runs `place` (this
    // file's own write-back result, close, the links into new/) and syncs again. syncfs
    // reports errors of the whole file system since its previous call, which another batch
    // may have consumed, so the file's own write-back result is collected before any link.
    template <class Close, class Place>
    bool placeGrouped(Close& closeFile, Place& placeAll) {
        ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
        auto r = groupCommit_->syncAround([&]() -> int {
            try {
                if (::sync_file_range(fd_, 0, 0,
                                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) !=
                    0)
                    return failWith("writeback");
                if (!closeFile()) return EIO;
                if (!placeAll(/*syncDirectory=*/false)) return EIO;
                return 0;
            } catch (const std::exception&) {
                errno = ENOMEM;
                return failWith("place");
            }
        });
        if (r.error == 0) return true;
        if (r.stage != GroupCommit::Stage::Step) {  // a step's failure is logged by the step
            errno = r.error;
            fail(r.stage == GroupCommit::Stage::FirstSync ? "group_commit" : "group_commit_links");
        }
        return false;
    }

    // A new file `to` with this message from byte `skip` on, written and not yet synced;
    // its open descriptor, or -1 (logged, nothing left behind).
    int copyWithout(std::uint64_t skip, const std::string& to) {
        int in = ::open(tempPath_.c_str(), O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            fail("queue_copy");
            return -1;
        }
        int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0) {
            fail("queue_copy");
            ::close(in);
            return -1;
        }
        off_t from = static_cast<off_t>(skip);
        std::uint64_t left = size_ - skip;
        bool ok = true;
        char buf[65536];
        while (ok && left > 0) {
            ssize_t n = ::pread(in, buf, static_cast<std::size_t>(std::min<std::uint64_t>(sizeof buf, left)), from);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                if (n == 0) errno = EIO;  // shorter than written: never queue a cut message
                ok = false;
                break;
            }
            ok = queue::writeAll(out, buf, static_cast<std::size_t>(n));
            from += n;
            left -= static_cast<std::uint64_t>(n);
        }
        ::close(in);
        if (!ok) {
            fail("queue_copy");
            ::close(out);
            ::unlink(to.c_str());
            return -1;
        }
        return out;
    }

    int failWith(const char* step) {
        const int e = errno ? errno : EIO;
        fail(step);
        return e;
    }

    bool flush() {
        if (buffer_.empty()) return true;
        if (!queue::writeAll(fd_, buffer_.data(), buffer_.size())) return fail("write");
        buffer_.clear();
        return true;
    }

    bool fail(const char* step) {
        if (!failed_)
            logger().error(core::EventLine::inSession(envelope_.sessionId, "store.write_fail")
                               .add("path", tempPath_)
                               .add("step", step)
                               .text("error", errnoText(errno))
                               .str());
        failed_ = true;
        return false;
    }

    MaildirStore& store_;
    queue::OutboundQueue& queue_;
    core::Envelope envelope_;
    std::string tempPath_;
    int fd_;
    std::string buffer_;
    std::uint64_t size_ = 0;
    std::uint64_t returnPathBytes_ = 0;  // the Return-Path line on top, for a mixed message
    bool failed_ = false;
    bool committed_ = false;
    bool moved_ = false;  // the temp file itself is the queue's data file now
    const SpoolSink::DeliveredHook* delivered_;
    GroupCommit* groupCommit_;  // nullptr: fsync file and directories per message
};

}  // namespace

core::MessageWriterPtr SpoolSink::open(const core::Envelope& envelope, core::SinkStatus& status) {
    status = core::SinkStatus::TempFail;
    if (envelope.localMailboxes.empty() && envelope.remoteRecipients.empty()) {
        logger().error(
            core::EventLine::inSession(envelope.sessionId, "store.open_fail").add("error", "no_recipients").str());
        return nullptr;
    }
    if (!envelope.remoteRecipients.empty() && !envelope.failureReport && queue_.isFull()) {
        status = core::SinkStatus::QueueFull;
        logger().warning(core::EventLine::inSession(envelope.sessionId, "store.queue_full").str());
        return nullptr;
    }
    for (const auto& mailbox : envelope.localMailboxes) {
        if (!store_.maildirPath(mailbox)) {
            logger().error(core::EventLine::inSession(envelope.sessionId, "store.open_fail")
                               .add("mailbox", mailbox)
                               .add("error", "invalid_location")
                               .str());
            return nullptr;
        }
    }
    // Where the temp file lives decides which placements are a cheap link(2) and which a
    // copy, and what a crash leaves behind. With remote recipients: the queue's incoming/,
    // because the queue is the copy that must survive longest and is local to this node
    // (local copies are then linked, or copied through the spool on EXDEV). Local-only: the
    // server's spool on the mail root's file system, so every mailbox gets a link and a
    // failed or killed delivery leaves nothing in any Maildir (the next start clears the
    // spool). Only if the first mailbox is on another file system than the spool (or there
    // is no spool) does the temp file go to its Maildir tmp/, as Maildir itself prescribes.
    std::string dir;
    if (!envelope.remoteRecipients.empty()) {
        dir = queue_.incomingDirectory();
    } else {
        std::string maildir = *store_.maildirPath(envelope.localMailboxes.front());
        // One stat(2) for an existing Maildir (its device decides where the temp file goes);
        // a missing one is made first.
        auto mkdirFailed = [&] {
            logger().error(core::EventLine::inSession(envelope.sessionId, "store.open_fail")
                               .add("maildir", maildir)
                               .add("step", "mkdir")
                               .text("error", errnoText(errno))
                               .str());
            return nullptr;
        };
        struct stat st{};
        const bool exists = ::stat(maildir.c_str(), &st) == 0;
        if (!exists && (!MaildirStore::ensureMaildir(maildir) || ::stat(maildir.c_str(), &st) != 0))
            return mkdirFailed();
        const MailSpool* spool = store_.spool();
        if (spool && !spool->directory().empty() && st.st_dev == spool->device()) {
            dir = spool->directory();
        } else {
            static std::atomic<bool> warned{false};
            if (spool && !warned.exchange(true))
                logger().warning(core::EventLine::inSession(envelope.sessionId, "store.spool_cross_device")
                                     .add("maildir", maildir)
                                     .add("spool", spool->directory())
                                     .text("note", "temp files go to Maildir tmp/ on this file system (logged once)")
                                     .str());
            if (exists && !MaildirStore::ensureMaildir(maildir)) return mkdirFailed();  // tmp/ is written to here
            store_.cleanTmp(maildir);
            dir = maildir + "/tmp";
        }
    }
    for (int tries = 0; tries < 8; ++tries) {
        std::string path = dir + "/" + store_.uniqueName(0) + ".part";
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            status = core::SinkStatus::Ok;
            // Group commit covers local-only messages on the committer's file system (the
            // queue path keeps its own per-message fsyncs).
            GroupCommit* gc = nullptr;
            struct stat fst{};
            if (groupCommit_ && envelope.remoteRecipients.empty() && ::fstat(fd, &fst) == 0 &&
                fst.st_dev == groupDevice_)
                gc = groupCommit_;
            auto writer = std::make_unique<SpoolWriter>(store_, queue_, envelope, path, fd, &delivered_, gc);
            // RFC 5321 4.4: final delivery puts the envelope sender in a Return-Path line at
            // the top (as Postfix's local/virtual and Dovecot's LDA/LMTP do), in every
            // mailbox's copy. The queue's copy must not carry one (a relay SHOULD NOT send
            // it): a message also for remote recipients queues a copy without it at commit.
            if (!envelope.localMailboxes.empty()) {
                const std::string line = "Return-Path: <" + envelope.sender + ">\r\n";
                if (!writer->write(line.data(), line.size())) {
                    status = core::SinkStatus::TempFail;
                    return nullptr;  // the writer's destructor removes the temp file
                }
                if (!envelope.remoteRecipients.empty()) writer->markReturnPath(line.size());
            }
            return writer;
        }
        if (errno != EEXIST) break;
    }
    logger().error(core::EventLine::inSession(envelope.sessionId, "store.open_fail")
                       .add("dir", dir)
                       .text("error", errnoText(errno))
                       .str());
    return nullptr;
}

}  // namespace postern::store
