// A grant store that a write-behind layer (WriteBehindGrantStore) can write through later:
// it names keys, knows the lifetime, and can store a grant whose times were fixed earlier.
#pragma once

#include "core/GrantStore.h"

#include <chrono>
#include <string>

namespace postern::grants {

// Thread-safe like core::GrantStore. Implemented by PgGrantStore (and fakes in tests).
class DurableGrantStore : public core::GrantStore {
public:
    enum class WriteResult {
        Written,     // stored with the given times
        Superseded,  // a grant expiring later is already stored for the key: left as it is
        Revoked,     // revoked after the login (posternctl, an account disabled): not written
        Failed,      // the store could not be reached (logged by the implementation)
    };

    // The key text of `client` ("192.0.2.7", "2001:db8:1:2::/64"): core::addressKey.
    virtual std::string keyText(const core::ClientAddress& client) const = 0;
    // pop_before_smtp.lifetime.
    virtual std::chrono::seconds lifetime() const = 0;
    // Stores `grant` for `key` with its own expiry (never extended) and `created` (the
    // login's time). Never shortens a grant already stored that expires later (a newer
    // login, maybe on another node): that one wins (Superseded). Never stores a grant revoked
    // after `created` (Revoked).
    virtual WriteResult writeThrough(const std::string& key, const core::Grant& grant,
                                     std::chrono::system_clock::time_point created) = 0;
};

}  // namespace postern::grants
