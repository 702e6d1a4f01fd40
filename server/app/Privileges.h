// Privilege separation basics: refuse unsafe secret files, drop root after binding
// ports and reading secrets, refuse to serve as root unless explicitly configured.
#pragma once

#include <string>
#include <vector>

namespace postern::app {

// Throws std::runtime_error (one line naming the file and the fix) if `path` is not a
// regular file or is readable by "other" users. Group-readable is allowed (Debian's
// ssl-cert group pattern, 0640 root:ssl-cert).
void checkSecretFile(const std::string& path, const std::string& what);

// Switches to `user` (and `group`, default: the user's primary group) for good:
// setgroups, setgid, setuid, then verifies root cannot be regained. Only when running
// as root; otherwise a configured user other than the current one is an error.
// With an empty user: refuses to continue as root unless allowRoot is true.
// Throws std::runtime_error on any failure.
void dropPrivileges(const std::string& user, const std::string& group, bool allowRoot);

// Started as root with a server.user: each of `dirs` (the ones this start made) that root
// owns is given to that user and group, so the daemon can still write into it after the
// drop. Other owners and missing paths are left alone. Throws on a failed chown.
void handOverDirectories(const std::vector<std::string>& dirs, const std::string& user, const std::string& group);

}  // namespace postern::app
