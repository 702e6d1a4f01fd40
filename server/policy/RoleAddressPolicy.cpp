// Role addresses (RFC 5321 4.5.1, RFC 2142): postmaster and abuse of every local domain.
#include "policy/RoleAddressPolicy.h"

#include "policy/RelayPolicy.h"
#include "core/Utf8.h"

#include <utility>

namespace postern::policy {

namespace {

bool equalsNoCase(const std::string& a, const char* b) {
    std::size_t i = 0;
    for (; i < a.size() && b[i]; ++i) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != b[i]) return false;
    }
    return i == a.size() && !b[i];
}

RcptVerdict make(RcptVerdict::Kind kind, smtp::Reply reply, const char* reason) {
    RcptVerdict v;
    v.kind = kind;
    v.reply = std::move(reply);
    v.reason = reason;
    v.isLocal = true;
    return v;
}

}  // namespace

RoleKind RoleAddressPolicy::roleOf(const std::string& localPart, const RoleAddresses& roles) {
    if (equalsNoCase(localPart, "postmaster")) return RoleKind::Postmaster;
    if (!roles.abuse.empty() && equalsNoCase(localPart, "abuse")) return RoleKind::Abuse;
    return RoleKind::None;
}

RcptVerdict RoleAddressPolicy::redirect(RoleKind role, const std::string& domain, const RoleAddresses& roles,
                                        core::UserDirectory& directory) {
    using Kind = RcptVerdict::Kind;
    const char* reason = role == RoleKind::Abuse ? "abuse" : "postmaster";
    const std::string target = core::asciiLower(role == RoleKind::Abuse ? roles.abuse : roles.postmaster);
    if (role == RoleKind::None || (role == RoleKind::Abuse && target.empty()))
        return make(Kind::Reject, smtp::replies::userUnknown(), "unknown_user");
    if (target.empty()) {
        if (domain.empty()) return make(Kind::Reject, smtp::replies::userUnknown(), "no_postmaster");
        RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), reason);
        v.mailboxes.push_back(core::asciiLower(domain) + "/postmaster");
        return v;
    }
    const auto at = target.rfind('@');
    const std::string targetDomain = at == std::string::npos ? std::string() : target.substr(at + 1);
    switch (directory.isLocalDomain(targetDomain)) {
    case core::Answer::TempFail:
        return make(Kind::TempFail, smtp::replies::tempFailure(), "directory_tempfail");
    case core::Answer::No: {
        RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), reason);
        v.forwards.push_back(target);
        return v;
    }
    case core::Answer::Yes:
        break;
    }
    core::RecipientLookup found = directory.lookupRecipient(target);
    switch (found.answer) {
    case core::Answer::Yes: {
        RcptVerdict v = make(Kind::Accept, smtp::replies::recipientOk(), reason);
        v.mailboxes = std::move(found.mailboxes);
        v.forwards = std::move(found.forwards);
        return v;
    }
    case core::Answer::No:
        // The operator pointed the role at an address that does not exist: a configuration
        // error (logged by the session as rcpt.reject reason=role_target_unknown). The mail
        // must not bounce (the RFC says it is accepted): the client tries again later.
        return make(Kind::TempFail,
                    smtp::Reply(451, smtp::Enhanced::SystemMisconfigured, "Temporary local problem, try again later"),
                    "role_target_unknown");
    case core::Answer::TempFail:
        break;
    }
    return make(Kind::TempFail, smtp::replies::tempFailure(), "directory_tempfail");
}

}  // namespace postern::policy
