// POP3 maildrops for clustered nodes: the PostgreSQL lease (PgMaildropLock) excludes other
// nodes, the local maildrop's own lock (MaildirStore's flock) this host.
#pragma once

#include "core/MaildropService.h"
#include "store/PgMaildropLock.h"

#include <string>

namespace postern::store {

// A decorator over the local MaildropService (normally the MaildirStore on the shared mail
// root). open():
//   1. takes the mailbox's lease:  InUse -> InUse ([IN-USE]); TempFail (PostgreSQL down) ->
//      a read-only maildrop under the local lock only: users can still log in and read
//      mail during an outage of the shared database, but nothing is deleted
//   2. opens the local maildrop:   anything but Ok releases the lease and is returned as is
//   3. Ok: the maildrop returned releases the local lock, then the lease, when destroyed.
// Before expunge() (the UPDATE state's deletions, RFC 1939 6) the lease is verified in
// PostgreSQL (PgMaildropLock::verify: a row that is gone is taken back): if another holder
// has it, or it cannot be checked, nothing is deleted and expunge() fails (the session
// answers -ERR), since another node may own the maildrop by now.
//
// Thread-safe (both parts are). Owns nothing: `local` and `lock` must outlive this service
// and every maildrop it opened.
class ClusterMaildropService : public core::MaildropService {
public:
    // nodeId: this node's name, stored in the lease row (operators see who holds a mailbox).
    ClusterMaildropService(core::MaildropService& local, PgMaildropLock& lock, std::string nodeId);

    core::MaildropStatus open(const std::string& mailbox, core::MaildropPtr& out) override;
    // Step 2 and 3 for a lease already taken (and adopted by the lock) with `token`.
    core::MaildropStatus openHeld(const std::string& mailbox, const std::string& token, core::MaildropPtr& out);
    PgMaildropLock& lock() { return lock_; }
    const std::string& nodeId() const { return nodeId_; }

private:
    core::MaildropService& local_;
    PgMaildropLock& lock_;
    const std::string nodeId_;
};

}  // namespace postern::store
