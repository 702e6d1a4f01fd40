// Where an accepted SMTP message goes (RFC 5321 4.4/6.1: 250 only once it is durable):
// local recipients -> Maildir new/ of each mailbox, remote recipients -> outbound queue.
#pragma once

#include "core/MessageSink.h"
#include "queue/OutboundQueue.h"
#include "store/GroupCommit.h"
#include "store/MaildirStore.h"

#include <sys/types.h>

#include <functional>
#include <string>

namespace postern::store {

// Implements the MessageSink port over a MaildirStore and an OutboundQueue, both owned
// by the caller and outliving the sink and every writer it opened. Thread-safe (state is
// in the file system and in the thread-safe store/queue); each writer belongs to one session.
//
// open():  QueueFull if the envelope has remote recipients and queue.isFull() (a failure
//          report is admitted: it replaces the message it reports on);
//          TempFail if there is no recipient, a mailbox location is invalid or the temp
//          file cannot be created; else a writer on a new temp file (mode 0600) in the
//          queue's incoming/ (remote recipients), else in the store's MailSpool (Maildir
//          tmp/ of the first mailbox only if that is on another file system).
// write(): buffered; an I/O error (ENOSPC, EIO) is sticky: write() and commit() fail.
// commit(): fsync the temp file; link it into <maildir>/new/ of every mailbox (copy on
//          EXDEV) and fsync each new/; queue it for the remote recipients (data, then
//          envelope by rename, directories fsynced); unlink the temp. Ok with the queue id
//          (also generated for local-only messages, for the "queued as" reply and logs).
//          On any failure everything placed so far is removed (best effort) -> TempFail.
// Group commit (setGroupCommit, store.group_commit): for local-only messages whose temp
//          file is on the committer's file system, commit() does not fsync the file and
//          each new/ itself; it waits once for a batch of the shared barrier, which runs
//          it twice: (1) the temp file's data is durable (and its own write-back error state
//          checked), only then (2) linked into every new/ and the links made durable -- then
//          Ok (GroupCommit::syncAround; the links are made on the batch leader's thread). A failed barrier
//          fails this message (TempFail: 451 4.3.0) with everything placed removed. A crash
//          before (1) leaves only the temp file (spool, cleared at start); between (1) and (2)
//          at worst a complete, durable message in new/ that was never acknowledged (the
//          client retries: a duplicate, as with the per-message fsync path).
// Destroying a writer without an Ok commit unlinks its temp file.
// DSN (RFC 3461): the queued envelope keeps RET/ENVID and each remote recipient's
// NOTIFY/ORCPT. Local recipients that asked for NOTIFY=SUCCESS: once every copy is durable
// (and before commit() returns) the delivered hook is called with the envelope, the queue
// id and the still present temp file; it injects the "delivered" report (BounceSender).
class SpoolSink : public core::MessageSink {
public:
    using DeliveredHook = std::function<void(const core::Envelope& envelope, const std::string& queueId,
                                             const std::string& dataPath)>;

    SpoolSink(MaildirStore& store, queue::OutboundQueue& queue) : store_(store), queue_(queue) {}

    core::MessageWriterPtr open(const core::Envelope& envelope, core::SinkStatus& status) override;

    // Set once at startup, before the first open() (not synchronised).
    void setDeliveredHook(DeliveredHook hook) { delivered_ = std::move(hook); }
    // Set once at startup, before the first open(): local-only messages whose temp file is
    // on file system `device` share the durability barrier `gc` (which must sync that file
    // system and outlive the sink). nullptr: every message fsyncs its own file and new/.
    void setGroupCommit(GroupCommit* gc, dev_t device) {
        groupCommit_ = gc;
        groupDevice_ = device;
    }

private:
    MaildirStore& store_;
    queue::OutboundQueue& queue_;
    DeliveredHook delivered_;
    GroupCommit* groupCommit_ = nullptr;
    dev_t groupDevice_ = 0;
};

}  // namespace postern::store
