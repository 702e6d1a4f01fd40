// An account flagged as compromised (abuse/AccountSecurity) may not submit new mail until
// an operator releases it: MAIL FROM gets 451 4.7.1. Decided at MAIL rather than RCPT: the
// account, not a recipient, is the problem, so the whole transaction is refused before any
// recipient is looked up or counted against the rate limits; 4xx because the mail client
// should keep the message and retry once `posternctl user release` has run.
#pragma once

#include "core/AccountSecurity.h"
#include "core/AuthService.h"
#include "smtpproto/ReplyCode.h"

#include <optional>

namespace postern::policy {

class AccountHoldPolicy {
public:
    // nullopt: the sender may go on. Unauthenticated sessions (identity null) and a null
    // `hold` (detection off) are never refused here.
    static std::optional<smtp::Reply> check(const core::AuthIdentity* identity, const core::AccountHold* hold);
};

}  // namespace postern::policy
