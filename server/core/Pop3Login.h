// Port: the cluster-state part of a successful POP3 login in one step (penalty check, the
// maildrop lease, the POP-before-SMTP grant), for a node whose state is shared through
// PostgreSQL (app/ClusterPop3Login: one statement instead of five).
#pragma once

#include "core/AuthService.h"
#include "core/MaildropService.h"

namespace postern::core {

struct Pop3LoginOutcome {
    enum class Status {
        Ok,        // `out` is the open maildrop (lease held); the grant was made if asked
        Blocked,   // the failed-login penalty blocks: answered as a blocked login (already
                   // delayed and logged), nothing opened
        InUse,     // another session holds the maildrop: -ERR [IN-USE]
        TempFail,  // -ERR [SYS/TEMP]
    };
    Status status = Status::TempFail;  // fail closed
    bool grantFailed = false;          // Ok, a grant was asked and is lost (logged by the caller)
};

// Thread-safe; blocking. Called after the password was verified with
// AuthRequest::penaltyCheckedByCaller set.
class Pop3Login {
public:
    virtual ~Pop3Login() = default;
    // `request` as sent to the auth service (client, login name), `identity` its result.
    // grant: make a POP-before-SMTP grant for the client.
    virtual Pop3LoginOutcome open(const AuthRequest& request, const AuthIdentity& identity, bool grant,
                                  MaildropPtr& out) = 0;
};

}  // namespace postern::core
