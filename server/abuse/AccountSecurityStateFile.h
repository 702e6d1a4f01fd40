// The state file of a single node's account security (no PostgreSQL): flags, counters and
// the login log of MemoryAccountSecurityStore, in <server.queue_dir>/account-security.state,
// so a restart keeps holding a flagged account's mail and `posternctl user logins` can read
// the log. Written by posternd's flush thread when something changed (write a temporary
// file, fsync, rename over the old one, fsync the directory: a crash leaves the old or the
// new file, never a torn one); read by posternd at start and by posternctl.
//
// Format (text, version 1, one record per line, fields separated by one space, each field
// percent-encoded: bytes <= 0x20, 0x7f and '%' as %XX; an empty field is "-", a field that
// is exactly "-" is "%2D"; times are milliseconds since the Unix epoch, UTC):
//
//   postern-account-security 1
//   flag USER REASON VALUE THRESHOLD
//   ip USER IP LAST_LOGIN_MS
//   count USER AT_MS REMOTE_REJECTED BOUNCES
//   login USER AT_MS IP PROTOCOL MECHANISM TLS RESULT
//   end RECORDS
//
// "end" carries the number of records before it and must be the last line: a file that was
// cut short (or any other damage) does not parse.
#pragma once

#include "abuse/AccountSecurityStore.h"

#include <stdexcept>
#include <string>
#include <string_view>

namespace postern::abuse {

class StateFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The file's name in the queue directory.
inline constexpr const char* AccountSecurityStateName = "account-security.state";

std::string formatAccountSecurityState(const AccountSecurityState& state);
// Throws StateFileError (with the line number) for anything that is not a complete file of
// a known version.
AccountSecurityState parseAccountSecurityState(std::string_view text);

struct StateFileLoad {
    enum class Status { Missing, Loaded, Corrupt } status = Status::Missing;
    AccountSecurityState state;
    std::string error;  // Corrupt: what the parser said
};
// Reads and parses `path`. Missing: no such file. Corrupt: it does not parse (or is larger
// than maxBytes). Throws std::runtime_error when the file exists but cannot be read
// (permissions, I/O error): the caller decides whether that is fatal.
StateFileLoad loadAccountSecurityState(const std::string& path, std::size_t maxBytes = std::size_t(1) << 30);

// Replaces `path` atomically with `text` (tmp file, fsync, rename, fsync of the directory).
// Throws std::runtime_error on failure (the old file is then untouched).
void writeFileAtomically(const std::string& path, const std::string& text);

}  // namespace postern::abuse
