// Sender policy: who may use which MAIL FROM address. Submission requires AUTH (RFC 6409
// 4.3) and an authenticated client may only send as its own addresses (RFC 6409 6.1).
#pragma once

#include "core/AuthService.h"
#include "smtpproto/ReplyCode.h"
#include "smtpproto/SmtpAddress.h"

#include <optional>

namespace postern::policy {

struct SenderContext {
    bool submission = false;                       // listener role is submission (587/465)
    const core::AuthIdentity* identity = nullptr;  // nullptr: not authenticated
};

// Pure decision logic; thread-safe.
class SenderPolicy {
public:
    // nullopt: the sender is acceptable (the session answers 250 2.1.0). Otherwise the
    // refusal to send:
    //  - submission, not authenticated                    -> 530 5.7.0 Authentication required
    //  - authenticated (any role), null sender <>         -> 553 5.7.1 Sender address rejected:
    //                                                        null sender not allowed
    //  - authenticated, address not in senderAddresses    -> 553 5.7.1 Sender address rejected:
    //                                                        not owned by user <u>
    //  - mx, not authenticated                            -> accepted (anyone may send to us)
    // Comparison: the canonical address (ParsedPath::address(), quotes removed) is lower-cased
    // whole - domain and local part - and compared exactly with each senderAddresses entry,
    // also lower-cased. Lower-casing the local part is a deliberate choice: our directory
    // treats local parts case-insensitively, so "Bob@x" and "bob@x" are the same owner, and
    // no two users can differ only by case. `sender` must be ok (else 501 5.1.7).
    static std::optional<smtp::Reply> check(const smtp::ParsedPath& sender, const SenderContext& ctx);
};

}  // namespace postern::policy
