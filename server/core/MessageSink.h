// Port: where an accepted message goes. Local recipients -> mailboxes (Maildir),
// remote recipients -> the node's durable outbound queue.
#pragma once

#include "core/ClientAddress.h"
#include "core/DsnRequest.h"

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace postern::core {

struct Envelope {
    std::string sessionId;
    std::string sender;                          // reverse-path; "" = null sender <>
    std::vector<std::string> localMailboxes;     // mailbox locations (deduplicated by caller)
    std::vector<std::string> remoteRecipients;   // forward-paths for the outbound queue
    ClientAddress client;
    std::string heloName;
    std::string authUser;                        // "" if not authenticated
    bool viaGrant = false;                       // a recipient was relayed on a POP-before-SMTP grant
    std::string grantUser;                       // then (not authenticated) the grant's POP3 user
    // The lower-cased addresses the authenticated user (or the grant's user) owns: DKIM signs
    // only a From among them.
    std::vector<std::string> senderOwns;
    // DSN requests (RFC 3461): RET/ENVID; NOTIFY/ORCPT per remote recipient (only those
    // that have any); the local recipients that asked for a success report, as
    // (RCPT address, its NOTIFY/ORCPT): told "delivered" once the message is stored.
    MessageDsn dsn;
    std::map<std::string, RecipientDsn> remoteDsn;
    std::vector<std::pair<std::string, RecipientDsn>> localSuccessDsn;
    bool hold = false;                           // the queued copy waits on hold (policy HOLD)
    bool smtpUtf8 = false;                       // MAIL ... SMTPUTF8 (RFC 6531)
    bool requireTls = false;                     // MAIL ... REQUIRETLS (RFC 8689)
    // A failure report (bounce) made by this server: queued even when the queue is full,
    // since the message it reports on leaves the queue with it (never set from SMTP).
    bool failureReport = false;
};

enum class SinkStatus {
    Ok,
    TempFail,   // I/O error, disk full: 451 4.3.0 (nothing was delivered)
    QueueFull,  // outbound queue over its size limit: 452 4.3.1
};

struct SinkResult {
    SinkStatus status = SinkStatus::TempFail;
    std::string queueId;  // shown in "250 2.0.0 Ok: queued as <id>"
};

// One message being received. Not thread-safe (one session owns it).
// Destroying it without a successful commit() removes every trace (no half-written
// message is ever visible in a mailbox or in the queue).
class MessageWriter {
public:
    virtual ~MessageWriter() = default;
    // Appends bytes exactly as they must be stored (CRLF line ends, already unstuffed).
    // Returns false after an I/O error (sticky); commit() will then fail.
    virtual bool write(const char* data, std::size_t size) = 0;
    // Makes the message durable: file fsynced, placed into every mailbox and the
    // queue, directories fsynced. Only after Ok may the session answer 250.
    virtual SinkResult commit() = 0;
};
using MessageWriterPtr = std::unique_ptr<MessageWriter>;

// Thread-safe factory.
class MessageSink {
public:
    virtual ~MessageSink() = default;
    // Checks queue limits up front (QueueFull) and opens a temp file; nullptr + status on failure.
    virtual MessageWriterPtr open(const Envelope& envelope, SinkStatus& status) = 0;
};

}  // namespace postern::core
