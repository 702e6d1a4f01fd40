// Role addresses every mail domain must have (RFC 5321 4.5.1 postmaster, RFC 2142 abuse):
// accepted for every local domain even when the user backend has no such account, and
// delivered to an address the operator configured. Never a relay path: only a recipient in
// a local domain (or the bare "<Postmaster>") is ever a role address.
#pragma once

#include "core/UserDirectory.h"

#include <string>

namespace postern::policy {

struct RcptVerdict;

// [smtp.postmaster_address], [smtp.abuse_address].
struct RoleAddresses {
    // Where postmaster@<local domain> and <Postmaster> go when the backend has no such
    // account or alias. "" (the default): the domain's own postmaster mailbox,
    // "<domain>/postmaster" - the mailbox the account postmaster@<domain> has once it is
    // added, so mail received before that is not lost and is then readable over POP3.
    std::string postmaster;
    // Where abuse@<local domain> goes when the backend has no such account. "": off (abuse@
    // is an ordinary recipient).
    std::string abuse;

    bool operator==(const RoleAddresses&) const = default;
};

enum class RoleKind { None, Postmaster, Abuse };

class RoleAddressPolicy {
public:
    // The role a local part names: "postmaster" in any case always; "abuse" in any case only
    // when roles.abuse is set.
    static RoleKind roleOf(const std::string& localPart, const RoleAddresses& roles);

    // The verdict for role@domain once the directory said it has no such recipient
    // (`domain` is local, or the domain of the bare <Postmaster>):
    //  - the configured address: in a local domain it is looked up (Yes -> its mailboxes and
    //    forwards; No -> 451 4.3.5, a configuration error, never a bounce of mail the RFC says
    //    must be accepted; TempFail -> 451 4.3.0); in a remote domain it is forwarded;
    //  - postmaster without a configured address: mailbox "<domain>/postmaster" (domain
    //    empty: 550 5.1.1 "no_postmaster").
    // Reasons: "postmaster", "abuse", "role_target_unknown", "directory_tempfail", "no_postmaster".
    static RcptVerdict redirect(RoleKind role, const std::string& domain, const RoleAddresses& roles,
                                core::UserDirectory& directory);
};

}  // namespace postern::policy
