// The server's own spool on the mail root's file system: messages being received for
// local mailboxes are written here, not into a user's Maildir tmp/, so that a delivery that
// fails or a process that dies leaves nothing in anybody's mailbox, and a restart can
// remove what was left without walking the mailboxes.
#pragma once

#include "core/MailboxLocation.h"

#include <sys/types.h>

#include <cstddef>
#include <string>

namespace postern::store {

// Layout: <mail_root>/.postern-spool/<host>-<pid>-<seconds>-<n>/ with a file "lock" in it,
// held with flock(LOCK_EX) for the life of the process (the kernel drops it if the process
// dies; on NFS the lock is the client's emulation over NLM/NFSv4 locks, so nodes sharing a
// mail root each keep their own directory). Files 0600, directories 0700.
//
// start() creates and locks this process's directory, then removes every other directory of
// this writer name whose lock nobody holds (a crashed or stopped posternd's) with the files in
// it: they were never acknowledged (250 is sent only after the message is linked into new/,
// and a linked message no longer needs its spool name). Another node's directories are left
// to that node (where flock is per host, a free lock does not mean a dead process) unless
// unchanged for a week (a spool directory changes with each local delivery through it). The destructor removes the own directory.
//
// Thread-safe after start() (only paths are read).
class MailSpool {
public:
    MailSpool(std::string mailRoot, std::string hostname);
    ~MailSpool();
    MailSpool(const MailSpool&) = delete;
    MailSpool& operator=(const MailSpool&) = delete;

    // false: the spool cannot be used (logged); deliveries then use Maildir tmp/.
    // `removed`: leftover files of earlier processes removed.
    bool start(std::size_t& removed);

    // This process's spool directory; empty until start() succeeded.
    const std::string& directory() const { return dir_; }
    // st_dev of the spool (link(2) into a Maildir works only on the same device).
    dev_t device() const { return device_; }

    static constexpr const char* DirName = core::SpoolDirName;

private:
    bool createOwn();
    std::size_t removeDead();

    std::string root_;  // <mail_root>/.postern-spool
    std::string hostname_;
    std::string dir_;
    dev_t device_ = 0;
    int lockFd_ = -1;
};

}  // namespace postern::store
