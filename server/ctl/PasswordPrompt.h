// Reads a password for posternctl: from the terminal without echo (asked twice), or from the
// first line of stdin when it is not a terminal. Never from argv (visible in ps and history).
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

namespace postern::ctl {

// Returns the password, or nullopt after writing the reason to err (end of input, the two
// entries differ, empty password, terminal error). Not thread-safe (touches the terminal).
std::optional<std::string> readNewPassword(std::istream& in, std::ostream& err);

// One password to check (posternctl auth test): asked once without echo, or the first line of
// stdin. nullopt after writing the reason to err (end of input, terminal error).
std::optional<std::string> readPassword(std::istream& in, std::ostream& err);

}  // namespace postern::ctl
