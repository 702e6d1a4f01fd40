// POP3 login in a cluster: penalty, lease and grant in one statement (postern_pop3_login).
#include "app/ClusterPop3Login.h"

#include "abuse/PgTime.h"
#include "core/EventLine.h"
#include "core/OutboundLimiter.h"
#include "grants/SenderList.h"

#include <Poco/Logger.h>
#include <Poco/UUIDGenerator.h>

namespace postern::app {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.pop3"); }

const pg::Statement Pop3LoginStatement{
    "postern_pop3_login",
    "SELECT outcome, ip_failures, ip_expires_us, user_failures, user_expires_us FROM postern_pop3_login("
    "$1, $2, $3::bigint, $4::integer, $5::integer, $6, $7, $8::uuid, $9::bigint, $10, $11, $12::bigint, $13, $14)"};

abuse::PenaltyCount countOf(const pg::Value& failures, const pg::Value& expiresUs) {
    abuse::PenaltyCount c;
    try {
        c.failures = failures ? static_cast<std::uint32_t>(std::stoul(*failures)) : 0;
        c.expires = abuse::fromPgMicros(expiresUs ? std::stoll(*expiresUs) : 0);
    } catch (const std::exception&) {
        c = {};
    }
    return c;
}

}  // namespace

ClusterPop3Login::ClusterPop3Login(pg::Pool& pool, abuse::AuthPenalty& penalty, abuse::PenalizedAuthService& guarded,
                                   store::ClusterMaildropService& maildrops, grants::PgGrantStore* pgGrants,
                                   core::GrantStore* grants, std::function<void(bool)> onGrant)
    : pool_(pool),
      penalty_(penalty),
      guarded_(guarded),
      maildrops_(maildrops),
      pgGrants_(pgGrants),
      grants_(grants),
      onGrant_(std::move(onGrant)) {}

core::Pop3LoginOutcome ClusterPop3Login::open(const core::AuthRequest& request, const core::AuthIdentity& identity,
                                              bool grant, core::MaildropPtr& out) {
    core::Pop3LoginOutcome outcome = decide(request, identity, grant, out);
    if (recordLogin_)
        recordLogin_(request, identity.user.empty() ? request.user : identity.user,
                     outcome.status == core::Pop3LoginOutcome::Status::Blocked ? core::AuthStatus::Blocked
                                                                               : core::AuthStatus::Ok);
    return outcome;
}

core::Pop3LoginOutcome ClusterPop3Login::decide(const core::AuthRequest& request, const core::AuthIdentity& identity,
                                                bool grant, core::MaildropPtr& out) {
    core::Pop3LoginOutcome outcome;
    const bool exempt = penalty_.isExempt(request.client);
    const bool withGrant = grant && pgGrants_ != nullptr;
    const auto& ps = penalty_.settings();
    const std::string token = Poco::UUIDGenerator::defaultGenerator().createRandom().toString();
    const std::string grantKey = withGrant ? pgGrants_->keyText(request.client) : std::string();
    pg::Params params{
        exempt ? pg::Value() : pg::Value(penalty_.ipKey(request.client)),
        request.user.empty() ? pg::Value() : pg::Value(abuse::AuthPenalty::accountKey(request.user)),
        std::to_string(abuse::toPgMicros(penalty_.now())),
        std::to_string(ps.maxFailuresIp),
        std::to_string(ps.maxFailuresAccount),
        store::PgMaildropLock::leaseKey(identity.mailbox),
        maildrops_.nodeId(),
        token,
        std::to_string(maildrops_.lock().lease().count()),
        withGrant ? pg::Value(grantKey) : pg::Value(),
        identity.user,
        std::to_string(withGrant ? pgGrants_->lifetime().count() : 0),
        grants::joinSenders(identity.senderAddresses),
        grants::joinLimits(core::limitAttributes(identity)),
    };
    // Retried once by the pool after a dropped connection: harmless (the lease statement
    // finds its own token, the grant upsert and the counter delete are idempotent).
    pg::QueryResult r = pool_.execute(Pop3LoginStatement, params);
    if (!r.ok() || r.rows.size() != 1 || r.rows[0].size() != 5 || !r.rows[0][0]) {
        logger().warning(core::EventLine::inSession(request.sessionId, "pop3.login_statement_fail")
                             .add("user", identity.user)
                             .text("error", r.failed() ? r.error : std::string("unexpected result"))
                             .add("fallback", "separate_statements")
                             .str());
        // A timeout can come after the COMMIT (and a result of the wrong shape did commit):
        // a lease written with this token would refuse the user's next POP3 logins as
        // "in use" until it lapsed.
        maildrops_.lock().forgetLater(identity.mailbox, token, r);
        return fallback(request, identity, grant, out);
    }
    const pg::Row& row = r.rows[0];
    const std::string& what = *row[0];
    if (what == "blocked") {
        abuse::PenaltyVerdict v = penalty_.verdictFromCounts(countOf(row[1], row[2]), countOf(row[3], row[4]));
        if (!v.isBlocked()) {  // the host's settings say otherwise: refuse anyway (fail closed)
            v.kind = abuse::PenaltyVerdict::Kind::Blocked;
            v.delay = ps.maxDelay;
            v.blockedBy = "ip";
        }
        // Blocked by the account alone: an address the account is known from may still get in
        // (AuthPenalty's known-address rule). Asked here with the statement's counts, as a
        // wrong password's check() asks after its counter read (the same round trips: no
        // timing oracle); a known address then goes the separate steps.
        abuse::PenaltyVerdict exempted = v;
        penalty_.exemptKnownAddress(request.client, request.user, exempted);
        if (exempted.isAllowed())
            return fallback(request, identity, grant, out);
        guarded_.refuseBlocked(request, v);
        outcome.status = core::Pop3LoginOutcome::Status::Blocked;
        return outcome;
    }
    if (what == "in_use") {
        logger().information(
            core::EventLine("lease.busy").add("mailbox", identity.mailbox).add("node", maildrops_.nodeId()).str());
        outcome.status = core::Pop3LoginOutcome::Status::InUse;
        return outcome;
    }
    if (what != "ok") {
        logger().error(core::EventLine::inSession(request.sessionId, "pop3.login_statement_fail")
                           .add("user", identity.user)
                           .text("error", "unexpected outcome " + what)
                           .str());
        return outcome;  // TempFail
    }
    maildrops_.lock().adopt(token, identity.mailbox, maildrops_.nodeId());
    // The statement cleared the shared account counter; one this node kept during an
    // outage is cleared too (else the owner's next typo here could block them).
    if (penalty_.hasLocalCounts(request.client, request.user)) penalty_.recordSuccess(request.client, request.user);
    if (withGrant) {
        Poco::Logger::get("postern.grants")
            .information(core::EventLine("grant.add")
                             .add("ip", grantKey)
                             .add("user", identity.user)
                             .add("ttl", pgGrants_->lifetime().count(), "s")
                             .add("store", "postgres")
                             .str());
        if (onGrant_) onGrant_(true);
    }
    switch (maildrops_.openHeld(identity.mailbox, token, out)) {
    case core::MaildropStatus::Ok:
        outcome.status = core::Pop3LoginOutcome::Status::Ok;
        break;
    case core::MaildropStatus::InUse:
        outcome.status = core::Pop3LoginOutcome::Status::InUse;
        break;
    case core::MaildropStatus::TempFail:
        outcome.status = core::Pop3LoginOutcome::Status::TempFail;
        break;
    }
    return outcome;
}

core::Pop3LoginOutcome ClusterPop3Login::fallback(const core::AuthRequest& request, const core::AuthIdentity& identity,
                                                  bool grant, core::MaildropPtr& out) {
    core::Pop3LoginOutcome outcome;
    abuse::PenaltyVerdict v = penalty_.check(request.client, request.user);
    if (v.kind == abuse::PenaltyVerdict::Kind::TempFail)
        return outcome;
    if (v.isBlocked()) {
        guarded_.refuseBlocked(request, v);
        outcome.status = core::Pop3LoginOutcome::Status::Blocked;
        return outcome;
    }
    penalty_.recordSuccess(request.client, request.user, v);
    if (v.viaKnownAddress) guarded_.noteKnownAddress(request, v);
    switch (maildrops_.open(identity.mailbox, out)) {
    case core::MaildropStatus::Ok:
        break;
    case core::MaildropStatus::InUse:
        outcome.status = core::Pop3LoginOutcome::Status::InUse;
        return outcome;
    case core::MaildropStatus::TempFail:
        return outcome;
    }
    outcome.status = core::Pop3LoginOutcome::Status::Ok;
    if (grant && grants_) {
        bool granted = false;
        try {
            granted = grants_->grant(request.client, core::grantFor(identity));
        } catch (const std::exception&) {
            granted = false;
        }
        outcome.grantFailed = !granted;
    }
    return outcome;
}

}  // namespace postern::app
