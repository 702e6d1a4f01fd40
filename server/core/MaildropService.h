// Port: a POP3 maildrop, opened under an exclusive lock for one session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace postern::core {

struct MaildropEntry {
    std::string uidl;      // unique and stable across sessions and restarts (RFC 1939 7)
    std::uint64_t size;    // octets exactly as RETR sends them (before dot-stuffing)
};

enum class MessageRead {
    Ok,
    Gone,      // removed by another program since the snapshot: retrying cannot help
    NotAFile,  // a symlink, FIFO or device in the Maildir: never readable, -ERR [SYS/PERM]
    Failed,    // I/O error: -ERR [SYS/TEMP]
};

// One message of an open maildrop, read in blocks: RETR of a large message holds one block in
// memory, not the message. Not thread-safe.
class MessageStream {
public:
    virtual ~MessageStream() = default;
    // The next block of the message's bytes as RETR sends them (before dot-stuffing) into
    // `out`, replacing what it held; `out` is left empty at the end. false: a read error
    // (the store has logged it), and nothing more can be read.
    virtual bool next(std::string& out) = 0;
};
using MessageStreamPtr = std::unique_ptr<MessageStream>;

// An open, locked maildrop. The lock is released when the object is destroyed
// (and by the OS if the process dies). Not thread-safe (one session owns it).
class Maildrop {
public:
    virtual ~Maildrop() = default;
    // Snapshot taken at open: messages arriving later are not shown (RFC 1939).
    virtual const std::vector<MaildropEntry>& entries() const = 0;
    // Opens a message to be read as RETR sends it, before dot-stuffing (the store may convert
    // line ends it knows to be LF, as a Dovecot file's, to CRLF: RFC 1939 3). `out` is set
    // only with Ok; the stream must not outlive the maildrop.
    virtual MessageRead openMessage(std::size_t index, MessageStreamPtr& out) = 0;
    // The whole message at once (tests, small messages): openMessage and every block. A read
    // error after the open is Failed.
    MessageRead read(std::size_t index, std::string& out) {
        out.clear();
        MessageStreamPtr stream;
        const MessageRead r = openMessage(index, stream);
        if (r != MessageRead::Ok) return r;
        for (std::string block;;) {
            if (!stream->next(block)) return MessageRead::Failed;
            if (block.empty()) return MessageRead::Ok;
            out += block;
        }
    }
    // UPDATE state: removes these messages (indexes into entries()). false on failure.
    virtual bool expunge(const std::vector<std::size_t>& indexes) = 0;
};
using MaildropPtr = std::unique_ptr<Maildrop>;

enum class MaildropStatus {
    Ok,
    InUse,     // another session holds the lock: -ERR [IN-USE]
    TempFail,  // I/O error: -ERR [SYS/TEMP]
};

// Thread-safe.
class MaildropService {
public:
    virtual ~MaildropService() = default;
    virtual MaildropStatus open(const std::string& mailbox, MaildropPtr& out) = 0;
};

}  // namespace postern::core
