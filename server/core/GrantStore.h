// Port: POP-before-SMTP grants (IP -> may relay until expiry).
#pragma once

#include "core/ClientAddress.h"
#include "core/UserDirectory.h"

#include <chrono>
#include <string>
#include <vector>

namespace postern::core {

struct Grant {
    std::string user;
    std::vector<std::string> senders;  // MAIL FROM addresses of that user (lower-cased)
    std::chrono::system_clock::time_point expires;
};

// Thread-safe. Implementations: memory (one node), PostgreSQL (cluster).
class GrantStore {
public:
    virtual ~GrantStore() = default;
    // Record that `user` (who may send as `senders`) logged in over POP3 from `client`;
    // lifetime from config. Returns false if the grant could not be recorded (logged by
    // the caller).
    virtual bool grant(const ClientAddress& client, const std::string& user,
                       const std::vector<std::string>& senders) = 0;
    // A grant whose only sender address is the login itself.
    bool grant(const ClientAddress& client, const std::string& user) { return grant(client, user, {user}); }
    // Yes (with the grant), No, or TempFail (store unreachable: 451 4.3.0, never relay).
    virtual Answer lookup(const ClientAddress& client, Grant* out) = 0;
};

}  // namespace postern::core
