// Mailboxes as Maildirs (<mailRoot>/<location>/{tmp,new,cur}) and the POP3 maildrop
// over them (RFC 1939: exclusive lock, snapshot at open, UIDL, delete in UPDATE only).
#pragma once

#include "core/MailboxUsage.h"
#include "core/MaildropService.h"
#include "store/MailSpool.h"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace postern::store {

// Owns nothing but paths. Thread-safe (all state is in the file system; the name
// counter is atomic). Directories are created on demand with mode 0700, files 0600.
//
// File names follow the Maildir convention
//   <seconds>.M<usec>P<pid>Q<counter>.<hostname>,S=<size>      (new/)
//   <same>:2,<flags>                                            (cur/)
// The size in the name lets a POP3 open list a maildrop without a stat per file; the
// part before ':' is the UIDL (unique, and stable across renames and restarts).
//
// Maildrop lock: flock(LOCK_EX|LOCK_NB) on <maildir>/postern.lock. Each open() has its own
// open file description, so it excludes other threads of this process as well as other
// processes on this host, and the kernel drops it if the process dies. (On shared storage
// across nodes the cluster lock in PostgreSQL is what excludes other nodes.)
class MaildirStore : public core::MaildropService, public core::MailboxUsage {
public:
    // hostname: for unique names; "" = gethostname().
    explicit MaildirStore(std::string mailRoot, std::string hostname = "");

    // Ok: locked maildrop in `out` (a missing mailbox is created and opens empty).
    // InUse: another session holds the lock. TempFail: invalid location or I/O error (logged).
    core::MaildropStatus open(const std::string& mailbox, core::MaildropPtr& out) override;

    // <mailRoot>/<mailbox>, or nullopt if the location is not a safe relative path
    // (empty, absolute, "..", "." or empty components, control characters).
    std::optional<std::string> maildirPath(const std::string& mailbox) const;
    // Creates <maildir>/{tmp,new,cur} (and the parents) if missing. false on error (errno).
    static bool ensureMaildir(const std::string& maildir);
    // Quotas: the bytes of the messages in new/ and cur/ (sizes from the names' S=, else
    // lstat), 0 for a mailbox not made yet; nullopt on an I/O error (logged). The count is
    // remembered (setUsageCacheSize) and used again while the modification times of new/ and
    // cur/ are what they were when it was made (and at least a second old: a change within
    // the same clock tick would not show).
    std::optional<std::uint64_t> usedBytes(const std::string& mailbox) const override;
    // Setup: how many mailboxes' counts are remembered (store.quota_cache_size; 0 = none).
    // When full, the cache starts again empty.
    void setUsageCacheSize(std::size_t n) { usageCacheSize_ = n; }
    // Setup: UIDLs from <maildir>/dovecot-uidlist for the messages it lists
    // (store.dovecot_uidlist; see etc/postern.properties).
    void setDovecotUidlist(bool on) { dovecotUidlist_ = on; }
    // A fresh Maildir base name for a message of `size` bytes (see above).
    std::string uniqueName(std::uint64_t size) const;

    // Places the fsynced file `source` (`size` bytes) into <maildir of mailbox>/new/
    // durably: link(2), then fsync new/. On EXDEV (source on another file system, e.g. the
    // outbound queue): a synced copy in the spool, linked from there (then removed); only
    // if the maildir is on yet another file system than the spool (or there is no spool):
    // Maildir's own tmp/ then rename. Nothing half-written is ever in new/.
    // true: `placedPath` is the new file (for undo). false: nothing placed (logged).
    // syncDirectory = false (group commit): when the file is placed by link(2) -- i.e. on the
    // file system of `source` -- new/ is not fsynced here; the caller must make the link
    // durable (GroupCommit on source's file system) before acknowledging. Copies to other
    // file systems are always synced here.
    bool deliver(const std::string& source, std::uint64_t size, const std::string& mailbox, std::string& placedPath,
                 bool syncDirectory = true);

    // Setup, before any other thread uses the store. The spool (started, outliving the
    // store) is where deliveries write; without one they use Maildir tmp/.
    void setSpool(const MailSpool* spool) { spool_ = spool; }
    const MailSpool* spool() const { return spool_; }
    // Files in a Maildir's tmp/ older than this are leftovers of a crashed writer (ours
    // before the spool, or another delivery agent's) and are removed when the mailbox is
    // opened for POP3 and when a delivery has to use tmp/. 0 = never.
    void setTmpCleanupAge(std::chrono::seconds age) { tmpCleanupAge_ = age; }
    // Removes files in <maildir>/tmp older than the cleanup age; returns how many (logged).
    std::size_t cleanTmp(const std::string& maildir) const;

    const std::string& mailRoot() const { return mailRoot_; }

private:
    std::string mailRoot_;
    std::string hostname_;
    const MailSpool* spool_ = nullptr;
    std::chrono::seconds tmpCleanupAge_{0};

    struct Usage {
        timespec newTime{}, curTime{};  // of new/ and cur/ when counted ({0,0}: missing)
        std::uint64_t bytes = 0;
    };
    std::size_t usageCacheSize_ = 0;
    bool dovecotUidlist_ = false;
    mutable std::mutex usageMutex_;
    mutable std::unordered_map<std::string, Usage> usage_;
};

}  // namespace postern::store
