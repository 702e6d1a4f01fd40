// The whole verdict on one MAIL or RCPT command, in one call, so the session only parses,
// asks and answers: sender rules (SenderPolicy), relay rules (RelayPolicy), the rule that a
// POP-before-SMTP grant belongs to its user, and the outbound rate limits.
#pragma once

#include "core/AccountSecurity.h"
#include "core/AuthService.h"
#include "core/ClientAddress.h"
#include "core/MailboxUsage.h"
#include "core/OutboundLimiter.h"
#include "core/PolicyDelegate.h"
#include "policy/RelayPolicy.h"
#include "policy/SenderPolicy.h"
#include "smtpproto/ReplyCode.h"
#include "smtpproto/SmtpAddress.h"

#include <cstdint>
#include <string>

namespace postern::policy {

struct SenderRequest {
    bool submission = false;                       // listener role is submission (587/465)
    const core::AuthIdentity* identity = nullptr;  // nullptr: not authenticated
    const core::ClientAddress& client;
    core::OutboundLimiter* limiter = nullptr;      // nullptr: no outbound limits
    const core::AccountHold* hold = nullptr;       // nullptr: no compromised-account holds
};

struct SenderVerdict {
    bool accepted = false;
    smtp::Reply reply = smtp::replies::tempFailure();  // 250 2.1.0 when accepted
    // "" when accepted; "sender" (SenderPolicy refused), "rate_limit" (450 4.7.1),
    // "rate_tempfail" (counter store unreachable, 451 4.3.0), "account_held" (451 4.7.1).
    std::string reason;
    std::string limit;  // which limit was hit, for the log ("user_messages_per_hour", ...)
};

struct RecipientRequest {
    RecipientContext relay;                        // what RelayPolicy needs
    const smtp::ParsedPath& sender;                // this transaction's MAIL FROM
    bool grantOwnSendersOnly = true;               // [pop_before_smtp.own_senders_only]
    const core::AuthIdentity* identity = nullptr;  // nullptr: not authenticated
    core::OutboundLimiter* limiter = nullptr;      // nullptr: no outbound limits
    core::PolicyDelegate* delegate = nullptr;      // nullptr: no policy delegation
    const core::PolicyFacts* facts = nullptr;      // what the delegate is told (with delegate)
    // The transaction's message was already counted against the client IP for a grant relay
    // (an earlier RCPT of it: RcptVerdict::countedMessage).
    bool messageCounted = false;
    // Compromised-account holds (nullptr: detection off); asked for the user of a grant.
    const core::AccountHold* hold = nullptr;
    // Mailbox quotas (nullptr: not enforced): what the mailboxes hold, the SIZE the client
    // declared at MAIL (0: none) and whether a full mailbox is 452 4.2.2 instead of 552 5.2.2.
    const core::MailboxUsage* usage = nullptr;
    std::uint64_t declaredSize = 0;
    bool quotaFullTempFail = false;
};

class TransactionPolicy {
public:
    // MAIL: SenderPolicy::check, then AccountHoldPolicy (a flagged account: 451 4.7.1),
    // then (authenticated senders only) one message counted against the user's and the
    // client's limits.
    static SenderVerdict decideSender(const smtp::ParsedPath& sender, const SenderRequest& req);

    // RCPT: RelayPolicy::decide; then (with `usage`) the quotas of the local mailboxes: one at
    // or over its quota, or one the declared SIZE would take over it, refuses the recipient
    // with 552 5.2.2 (452 4.2.2 with quotaFullTempFail), reason "mailbox_full" / "over_quota",
    // RcptVerdict::quotaMailbox naming it; then, for a recipient relayed on a grant with
    // grantOwnSendersOnly, the MAIL FROM must be the grant user's own address (else 554 5.7.1,
    // reason "grant_sender_mismatch": behind carrier-grade NAT one POP3 login must not let
    // every subscriber on that address relay as anyone); then a grant whose user is held as
    // compromised relays nothing (451 4.7.1, reason "account_held", as MAIL of an
    // authenticated session); then the policy service is asked
    // (delegate, only for a recipient our own rules accepted: its OK never overrides a
    // refusal): Refuse -> its reply (4xx TempFail, 5xx Reject), reason "policy" (or
    // "policy_default" when the default action answered for a failed service); PREPEND /
    // HOLD / DISCARD ride along in RcptVerdict::delegated; then the first recipient a
    // transaction relays on a grant counts its message against the client IP's and the grant
    // user's message limits (an authenticated sender's was counted at MAIL; 450 4.7.1 beyond, reason
    // "rate_limit"; RcptVerdict::countedMessage is set once it was counted); then every
    // recipient of an authenticated session or relayed on a grant is counted against the
    // limits of the client IP and of the user (the grant's user for a grant relay) (452 4.7.1, reason "rate_limit", RcptVerdict::limit says which; store
    // unreachable: 451, "rate_tempfail"). Anything not accepted carries no mailboxes or forwards.
    static RcptVerdict decideRecipient(const smtp::ParsedPath& rcpt, const RecipientRequest& req);
};

}  // namespace postern::policy
