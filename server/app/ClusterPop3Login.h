// POP3 login in a cluster in ONE statement: postern_pop3_login (schema 005) checks the
// failed-login penalty, clears the account's counter, takes the maildrop lease and upserts
// the POP-before-SMTP grant.
#pragma once

#include "abuse/AuthPenalty.h"
#include "abuse/PenalizedAuthService.h"
#include "core/GrantStore.h"
#include "core/Pop3Login.h"
#include "grants/PgGrantStore.h"
#include "pg/Pool.h"
#include "store/ClusterMaildropService.h"

#include <functional>

namespace postern::app {

// Outcomes (core::Pop3Login):
//  - the statement answers 'blocked': the refusal PenalizedAuthService gives a blocked login
//    (the longest delay, event=auth.blocked), Blocked; nothing written. Blocked by the
//    account alone and the client is a known address with room (AuthPenalty): the separate
//    steps below, whose penalty check lets it in
//  - 'in_use': InUse (the account's counter was cleared: the password was right)
//  - 'ok': the lease (adopted by the PgMaildropLock, which renews and releases it) and the
//    grant are in place; the local maildrop is opened (failure releases the lease)
//  - the statement fails (PostgreSQL down, schema 005 missing): the separate steps as
//    without this class - penalty check through the (degrading) penalty store, the lease
//    (read-only session when it cannot be had), the grant through the write-behind store -
//    so an outage behaves exactly as before
// With grants on, the grant follows the lease: made only when the lease was taken (also when
// the local maildrop then fails to open: the password was right).
// Thread-safe. Owns nothing; every reference must outlive it.
class ClusterPop3Login final : public core::Pop3Login {
public:
    // pgGrants: null = POP-before-SMTP off; grants: the store the fallback uses (the
    // counting write-behind store); onGrant(ok): telemetry for a grant made here.
    ClusterPop3Login(pg::Pool& pool, abuse::AuthPenalty& penalty, abuse::PenalizedAuthService& guarded,
                     store::ClusterMaildropService& maildrops, grants::PgGrantStore* pgGrants,
                     core::GrantStore* grants, std::function<void(bool)> onGrant = {});

    core::Pop3LoginOutcome open(const core::AuthRequest& request, const core::AuthIdentity& identity, bool grant,
                                core::MaildropPtr& out) override;

    // The login log (abuse/LoginRecordingAuthService::record): the password was right, so
    // the recorder left the attempt to this class; it is recorded once the penalty verdict
    // is known: Blocked if the statement (or the fallback) refused it, else Ok.
    using LoginRecorder = std::function<void(const core::AuthRequest&, const std::string& user, core::AuthStatus)>;
    void setLoginRecorder(LoginRecorder recorder) { recordLogin_ = std::move(recorder); }

private:
    core::Pop3LoginOutcome decide(const core::AuthRequest& request, const core::AuthIdentity& identity, bool grant,
                                  core::MaildropPtr& out);
    core::Pop3LoginOutcome fallback(const core::AuthRequest& request, const core::AuthIdentity& identity, bool grant,
                                    core::MaildropPtr& out);

    pg::Pool& pool_;
    abuse::AuthPenalty& penalty_;
    abuse::PenalizedAuthService& guarded_;
    store::ClusterMaildropService& maildrops_;
    grants::PgGrantStore* pgGrants_;
    core::GrantStore* grants_;
    std::function<void(bool)> onGrant_;
    LoginRecorder recordLogin_;
};

}  // namespace postern::app
