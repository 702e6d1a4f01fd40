// The one rule for a mailbox location as a backend gives it (a passwd-file mailbox= field,
// an SQL column, an LDAP attribute): a path relative to server.mail_root. Checked where the
// recipient is resolved (RCPT: a bad location defers that recipient only) and again by the
// store before it is used.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::core {

// The server's own spool under the mail root (store::MailSpool): never a mailbox.
inline constexpr const char* SpoolDirName = ".postern-spool";

// The location with one trailing '/' dropped ("d/alice/" and "d/alice" are one mailbox), or
// nullopt if it is empty, absolute, has an empty, "." or ".." part, or a control character,
// or is inside the spool.
std::optional<std::string> normalizeMailboxLocation(std::string_view location);

}  // namespace postern::core
