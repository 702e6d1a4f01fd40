// Port: POP-before-SMTP grants (IP -> may relay until expiry).
#pragma once

#include "core/ClientAddress.h"
#include "core/UserDirectory.h"

#include <chrono>
#include <string>

namespace postern::core {

struct Grant {
    std::string user;
    std::chrono::system_clock::time_point expires;
};

// Thread-safe. Implementations: memory (one node), PostgreSQL (cluster).
class GrantStore {
public:
    virtual ~GrantStore() = default;
    // Record that `user` logged in over POP3 from `client`; lifetime from config.
    // Returns false if the grant could not be recorded (logged by the caller).
    virtual bool grant(const ClientAddress& client, const std::string& user) = 0;
    // Yes (with the grant), No, or TempFail (store unreachable: 451 4.3.0, never relay).
    virtual Answer lookup(const ClientAddress& client, Grant* out) = 0;
};

}  // namespace postern::core
