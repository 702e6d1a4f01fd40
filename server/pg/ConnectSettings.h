// How to reach PostgreSQL: the libpq conninfo plus Postern's timeouts and pool size, typed.
// fromParams() reads them from the keys of one auth.backend.<name> block (the plugin and
// posternctl); the daemon's cluster fills the fields from its typed cluster.* config.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <string>

namespace postern::pg {

// Keys (under auth.backend.<instance>.):
//   conninfo           libpq conninfo or URI, passed through unchanged; may list several
//                      hosts with target_session_attrs (libpq picks the server) (required)
//   password_file      file whose first line is the database password; it must be a regular
//                      file without group or world permissions ("" = none, libpq's own ways)
//   pool_size          connections kept open (default 4)
//   (durations as core::parseDuration: "5s", "500ms", "2m")
//   connect_timeout    per-host connect timeout (default 5s; libpq counts whole seconds, min 2);
//                      also the pool's longest wait for a free connection
//   statement_timeout  SET statement_timeout on every connection, and the client-side deadline
//                      of each call (+ Connection::ClientDeadlineGrace) (default 5s; 0 = none)
struct ConnectSettings {
    std::string conninfo;
    std::string password;  // read from password_file; never logged
    std::size_t poolSize = 4;
    std::chrono::milliseconds connectTimeout{5000};
    std::chrono::milliseconds statementTimeout{5000};
    std::string applicationName = "postern";

    // Reads the keys above and ignores every other key (the caller checks for unknown ones).
    // Throws std::invalid_argument naming the key (missing conninfo, bad number or duration,
    // unreadable or too permissive password_file).
    static ConnectSettings fromParams(const std::map<std::string, std::string>& params);

    // The keys fromParams() reads, for the caller's unknown-key check.
    static const char* const* knownKeys();

    bool operator==(const ConnectSettings&) const = default;
};

// Reads the first line of a password file after checking it is a regular file with no group
// or world permission bits (a database password readable by others is refused, not used).
// Throws std::invalid_argument.
std::string readPasswordFile(const std::string& path);

}  // namespace postern::pg
