// Relay policy: local recipient lookup, and relaying only for authenticated clients or
// POP-before-SMTP grant holders. Fails closed: every "cannot tell" is 451, never accept.
#include "policy/RelayPolicy.h"

#include "core/Utf8.h"

#include <utility>

namespace postern::policy {

namespace {

using Kind = RcptVerdict::Kind;

RcptVerdict make(Kind kind, smtp::Reply reply, const char* reason) {
    RcptVerdict v;
    v.kind = kind;
    v.reply = std::move(reply);
    v.reason = reason;
    return v;
}

// RFC 5321 4.3.2 / 3.6: a directory that cannot answer is a temporary failure, never a
// "no" (the sender would bounce good mail) and never a "yes" (we would relay).
RcptVerdict tempFail(const char* reason) { return make(Kind::TempFail, smtp::replies::tempFailure(), reason); }

RcptVerdict lookupLocal(core::UserDirectory& directory, const std::string& address) {
    core::RecipientLookup found = directory.lookupRecipient(address);
    switch (found.answer) {
    case core::Answer::Yes: {
        RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), "local");
        v.isLocal = true;
        v.mailboxes = std::move(found.mailboxes);
        v.forwards = std::move(found.forwards);
        v.quotas = std::move(found.quotas);
        return v;
    }
    case core::Answer::No: {
        RcptVerdict v = make(Kind::Reject, smtp::replies::userUnknown(), "unknown_user");
        v.isLocal = true;
        return v;
    }
    case core::Answer::TempFail:
        break;
    }
    return tempFail("directory_tempfail");
}

}  // namespace

bool RelayPolicy::isRoutingLocalPart(const std::string& localPart) {
    return localPart.find_first_of("%!@") != std::string::npos;
}

RcptVerdict RelayPolicy::decide(const smtp::ParsedPath& rcpt, const RecipientContext& ctx, const std::string& sender) {
    if (!rcpt.ok || rcpt.isNull)
        return make(Kind::Reject, smtp::Reply(501, smtp::Enhanced::BadDestinationSyntax, "Bad recipient address syntax"),
                    "bad_syntax");

    // RFC 5321 4.5.1: "<Postmaster>" without a domain must be accepted, and so must
    // postmaster@ the name this server gives itself (greeting, Received, DSNs): the same
    // mailbox, also where that name is not a hosted domain (it was refused as a relay).
    const bool ownPostmaster = !rcpt.isAddressLiteral && !ctx.postmasterDomain.empty() &&
                               core::asciiLower(rcpt.localPart) == "postmaster" &&
                               core::asciiLower(rcpt.domain) == core::asciiLower(ctx.postmasterDomain);
    if (rcpt.isPostmaster || ownPostmaster) {
        if (ctx.postmasterDomain.empty())
            return RoleAddressPolicy::redirect(RoleKind::Postmaster, "", ctx.roles, ctx.directory);
        RcptVerdict v = lookupLocal(ctx.directory, "postmaster@" + ctx.postmasterDomain);
        if (v.kind == Kind::Reject)
            return RoleAddressPolicy::redirect(RoleKind::Postmaster, ctx.postmasterDomain, ctx.roles, ctx.directory);
        v.quotas.clear();  // <Postmaster> always takes mail
        return v;
    }

    // Only the parsed domain decides whether mail stays here or leaves (never anything
    // inside the local part). Address literals are remote: no literal is local yet.
    if (!rcpt.isAddressLiteral) {
        switch (ctx.directory.isLocalDomain(rcpt.domain)) {
        case core::Answer::TempFail:
            return tempFail("directory_tempfail");
        case core::Answer::Yes:
            // user%remote@local, remote!user@local, "user@remote"@local: the local part
            // names another destination. Old MTAs forwarded these (the '%' hack, UUCP bang
            // paths), which made them open relays; for us they are never a mailbox.
            if (isRoutingLocalPart(rcpt.localPart)) {
                RcptVerdict v = make(Kind::Reject, smtp::replies::userUnknown(), "bad_local_part");
                v.isLocal = true;
                return v;
            }
            {
                RcptVerdict v = lookupLocal(ctx.directory, rcpt.address());
                // RFC 5321 4.5.1, RFC 2142: postmaster@ (and abuse@ when configured) every
                // local domain is accepted even without such an account.
                const RoleKind role = RoleAddressPolicy::roleOf(rcpt.localPart, ctx.roles);
                if (v.kind == Kind::Reject && role != RoleKind::None)
                    return RoleAddressPolicy::redirect(role, rcpt.domain, ctx.roles, ctx.directory);
                if (role != RoleKind::None) v.quotas.clear();  // and are never refused as full
                return v;
            }
        case core::Answer::No:
            break;
        }
    }

    // Remote recipient: we relay only for our own users (RFC 5321 3.9, RFC 6409 5).
    if (ctx.authenticated) {
        RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), "relay_auth");
        v.forwards.push_back(rcpt.address());
        return v;
    }
    // Asked only now, for remote recipients of unauthenticated sessions: local delivery
    // never costs a grant lookup (which may be a PostgreSQL round trip).
    if (ctx.grants) {
        core::Grant grant;
        switch (ctx.grants->lookup(ctx.client, sender, &grant)) {
        case core::Answer::Yes: {
            RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), "relay_grant");
            v.forwards.push_back(rcpt.address());
            v.viaGrant = true;
            v.grantUser = grant.user;
            v.grantSenders = grant.senders;
            v.grantLimits = grant.limits;
            return v;
        }
        case core::Answer::TempFail:
            // The store is unreachable: try later, never relay and never a hard "no". 4.7.1:
            // the answer is about permission to relay (RFC 3463), which cannot be told now.
            return make(Kind::TempFail,
                        smtp::Reply(451, smtp::Enhanced::DeliveryNotAuthorized,
                                    "Cannot check relay permission now, try again later"),
                        "grant_tempfail");
        case core::Answer::No:
            break;
        }
    }
    return make(Kind::Reject, smtp::replies::relayDenied(), "relay_denied");
}

}  // namespace postern::policy
