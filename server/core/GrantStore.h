// Port: POP-before-SMTP grants ((IP, user) -> may relay until expiry).
#pragma once

#include "core/ClientAddress.h"
#include "core/UserDirectory.h"

#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core {

struct Grant {
    std::string user;
    std::vector<std::string> senders;  // MAIL FROM addresses of that user (lower-cased)
    std::chrono::system_clock::time_point expires;
    // The user's own outbound limits (core::limitAttributes of the login): a grant relay
    // counts against them as the user's AUTH relay would. Empty: the limits.user.* defaults.
    std::map<std::string, std::string> limits;
};

// Thread-safe. Implementations: memory (one node), PostgreSQL (cluster), the latter behind
// a write-behind layer (grants/WriteBehindGrantStore.h) that holds grants PostgreSQL cannot
// store yet.
class GrantStore {
public:
    virtual ~GrantStore() = default;
    // Record that `user` (who may send as `senders`) logged in over POP3 from `client`;
    // lifetime from config. True once the grant is in effect (stored, or held by this node
    // until it can be stored); false if it is lost (logged by the caller).
    // `grant.expires` is not read: the store sets it.
    virtual bool grant(const ClientAddress& client, const Grant& grant) = 0;
    bool grant(const ClientAddress& client, const std::string& user, const std::vector<std::string>& senders) {
        return grant(client, Grant{user, senders, {}, {}});
    }
    // A grant whose only sender address is the login itself.
    bool grant(const ClientAddress& client, const std::string& user) { return grant(client, user, {user}); }
    // Yes (with the grant), No (there is none: 554 5.7.1), or TempFail (the store cannot
    // tell: 451 4.7.1, never relay, never a 5xx).
    //
    // Grants are kept per (address, user): subscribers behind one NAT address each hold
    // their own, and a newer login of one does not take the address from the others. The
    // answer is the grant `sender` (a MAIL FROM, any case; empty for none) belongs to
    // (grantBelongsTo), else the one that expires last.
    virtual Answer lookup(const ClientAddress& client, const std::string& sender, Grant* out) = 0;
    // lookup(client, "", out): the grant that expires last.
    Answer lookup(const ClientAddress& client, Grant* out) { return lookup(client, std::string(), out); }
};

// Whether `sender` (a MAIL FROM, any case) is an address of the grant's user: the login
// itself or one of its senders.
bool grantBelongsTo(const Grant& grant, std::string_view sender);

// The grant lookup() answers with among `grants` (all live, one address): the one `sender`
// belongs to, else the one that expires last; nullptr if `grants` is empty.
const Grant* pickGrant(const std::vector<Grant>& grants, std::string_view sender);

}  // namespace postern::core
