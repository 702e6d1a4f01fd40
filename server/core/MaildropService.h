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

// An open, locked maildrop. The lock is released when the object is destroyed
// (and by the OS if the process dies). Not thread-safe (one session owns it).
class Maildrop {
public:
    virtual ~Maildrop() = default;
    // Snapshot taken at open: messages arriving later are not shown (RFC 1939).
    virtual const std::vector<MaildropEntry>& entries() const = 0;
    // Whole message bytes as RETR sends them, before dot-stuffing (the store may convert line
    // ends it knows to be LF, as a Dovecot file's, to CRLF: RFC 1939 3).
    virtual MessageRead read(std::size_t index, std::string& out) = 0;
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
