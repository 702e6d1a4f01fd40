#include "policy/TransactionPolicy.h"

#include "policy/AccountHoldPolicy.h"
#include "core/Utf8.h"

#include <algorithm>
#include <cctype>

namespace postern::policy {

namespace {

RcptVerdict refused(RcptVerdict v, RcptVerdict::Kind kind, smtp::Reply reply, const char* reason) {
    v.kind = kind;
    v.reply = std::move(reply);
    v.reason = reason;
    v.mailboxes.clear();
    v.forwards.clear();
    v.quotas.clear();
    v.delegated = {};  // nothing the policy service asked for applies to a refused recipient
    return v;
}

}  // namespace

SenderVerdict TransactionPolicy::decideSender(const smtp::ParsedPath& sender, const SenderRequest& req) {
    SenderVerdict v;
    if (auto refusal = SenderPolicy::check(sender, SenderContext{req.submission, req.identity})) {
        v.reply = *refusal;
        v.reason = "sender";
        return v;
    }
    if (auto held = AccountHoldPolicy::check(req.identity, req.hold)) {
        v.reply = *held;
        v.reason = "account_held";
        return v;
    }
    if (req.identity && req.limiter) {
        core::LimitAnswer la = req.limiter->addMessage(req.client, req.identity, v.limit);
        if (la == core::LimitAnswer::TempFail) {
            v.reply = smtp::replies::tempFailure();
            v.reason = "rate_tempfail";
            return v;
        }
        if (la == core::LimitAnswer::Limited) {
            v.reply = smtp::Reply(450, smtp::Enhanced::DeliveryNotAuthorized,
                                  "Message rate limit exceeded, try again later");
            v.reason = "rate_limit";
            return v;
        }
    }
    v.accepted = true;
    v.reply = smtp::replies::senderOk();
    return v;
}

RcptVerdict TransactionPolicy::decideRecipient(const smtp::ParsedPath& rcpt, const RecipientRequest& req) {
    RcptVerdict v = RelayPolicy::decide(rcpt, req.relay, req.sender.isNull ? std::string() : req.sender.address());
    if (v.kind != RcptVerdict::Kind::Accept) return v;
    if (req.usage) {
        // Quotas, checked here (as Dovecot's lmtp_rcpt_check_quota) so the sender learns it
        // from its own server: a mailbox at or over its quota, or one the declared SIZE would
        // take over it, refuses the recipient (an alias with such a mailbox too: never a
        // silent loss). A message without SIZE that crosses the quota is still delivered,
        // and the next one is refused (a soft quota, as Maildir++).
        for (const auto& [location, quota] : v.quotas) {
            const auto used = req.usage->usedBytes(location);
            if (!used) continue;  // cannot be told (logged by the store): no refusal on that
            const bool full = *used >= quota;
            const bool tooBig = !full && req.declaredSize > quota - *used;
            if (!full && !tooBig) continue;
            // A message larger than the whole quota can never fit: never "try again later".
            const bool temp = req.quotaFullTempFail && req.declaredSize <= quota;
            const int code = temp ? 452 : 552;
            std::string mailbox = location;  // `location` lives in v.quotas, which refused() clears
            RcptVerdict out = refused(std::move(v), temp ? RcptVerdict::Kind::TempFail : RcptVerdict::Kind::Reject,
                                      smtp::Reply(code, smtp::Enhanced::MailboxFull,
                                                  full ? "Mailbox full" : "Message too big for the mailbox quota"),
                                      full ? "mailbox_full" : "over_quota");
            out.quotaMailbox = std::move(mailbox);
            return out;
        }
    }
    if (v.viaGrant && req.grantOwnSendersOnly) {
        const std::string from = req.sender.isNull ? std::string() : core::asciiLower(req.sender.address());
        const bool own = !from.empty() &&
                         (from == v.grantUser ||
                          std::find(v.grantSenders.begin(), v.grantSenders.end(), from) != v.grantSenders.end());
        if (!own)
            return refused(std::move(v), RcptVerdict::Kind::Reject,
                           smtp::Reply(554, smtp::Enhanced::DeliveryNotAuthorized,
                                       "Relay access denied: sender is not the POP-before-SMTP user of this address"),
                           "grant_sender_mismatch");
    }
    // A grant relays for its POP3 user: that user's hold and limits (the user's own, as the
    // grant carries them) apply, as for AUTH (a stolen password held at MAIL must not go on
    // sending through POP-before-SMTP, nor an account whose limits were lowered past them).
    core::AuthIdentity grantIdentity;
    if (v.viaGrant && !req.identity && !v.grantUser.empty()) {
        grantIdentity.user = v.grantUser;
        grantIdentity.attributes = v.grantLimits;
    }
    const core::AuthIdentity* sender = req.identity ? req.identity : grantIdentity.user.empty() ? nullptr : &grantIdentity;
    if (!req.identity && sender) {
        if (auto held = AccountHoldPolicy::check(sender, req.hold))
            return refused(std::move(v), RcptVerdict::Kind::TempFail, *held, "account_held");
    }
    if (req.delegate && req.facts) {
        core::PolicyDecision d = req.delegate->check(*req.facts);
        if (d.kind == core::PolicyDecision::Kind::Refuse) {
            const bool failed = d.action == "default";
            smtp::Reply reply(d.code, d.enhanced < 0 ? smtp::Enhanced::None : static_cast<smtp::Enhanced>(d.enhanced),
                              d.text);
            v = refused(std::move(v), d.code >= 500 ? RcptVerdict::Kind::Reject : RcptVerdict::Kind::TempFail,
                        std::move(reply), failed ? "policy_default" : "policy");
            v.delegated = std::move(d);
            return v;
        }
        v.delegated = std::move(d);
    }
    // A limiter's answer: Allow keeps `v`; TempFail (store unreachable: 451) and Limited
    // (`code` 4.7.1 `text`) refuse the recipient, naming the limit.
    auto overLimit = [&v](core::LimitAnswer la, std::string what, int code, const char* text) {
        if (la == core::LimitAnswer::Allow) return false;
        const bool temp = la == core::LimitAnswer::TempFail;
        v = refused(std::move(v), RcptVerdict::Kind::TempFail,
                    temp ? smtp::replies::tempFailure() : smtp::Reply(code, smtp::Enhanced::DeliveryNotAuthorized, text),
                    temp ? "rate_tempfail" : "rate_limit");
        v.limit = std::move(what);
        return true;
    };
    if (req.limiter && v.viaGrant && !req.identity && !req.messageCounted) {
        // A grant relay has no MAIL-time count (MAIL cannot know the transaction will relay):
        // its message counts here, once, against the client IP and the grant's user.
        std::string what;
        core::LimitAnswer la = req.limiter->addMessage(req.relay.client, sender, what);
        if (overLimit(la, what, 450, "Message rate limit exceeded, try again later")) return v;
        v.countedMessage = true;
    }
    if (req.limiter && (req.identity || v.viaGrant)) {
        std::string what;
        core::LimitAnswer la = req.limiter->addRecipients(req.relay.client, sender, 1, what);
        if (overLimit(la, what, 452, "Recipient rate limit exceeded, try again later")) return v;
    }
    return v;
}

}  // namespace postern::policy
