#include "abuse/LoginRecordingAuthService.h"

#include "abuse/NameFold.h"
#include "core/Idna.h"
#include "core/Utf8.h"

namespace postern::abuse {

namespace {

const char* resultName(core::AuthStatus s) {
    switch (s) {
    case core::AuthStatus::Ok: return "ok";
    case core::AuthStatus::BadCredentials: return "fail";
    case core::AuthStatus::Blocked: return "blocked";
    case core::AuthStatus::TempFail: return "tempfail";
    }
    return "tempfail";
}

}  // namespace

core::AuthResult LoginRecordingAuthService::authenticate(const core::AuthRequest& request) {
    core::AuthResult result = inner_.authenticate(request);
    // The caller decides after its own penalty check whether this success was blocked.
    if (result.status == core::AuthStatus::Ok && request.penaltyCheckedByCaller) return result;
    // A success is logged under the canonical login (what release, the queue and the
    // detection use); a failure under the name given, lower-cased as logins are compared
    // (ASCII only), so "Bob@Example.test" guessing lands in bob@example.test's log.
    record(request,
           result.status == core::AuthStatus::Ok && !result.identity.user.empty() ? result.identity.user
                                                                                  : core::asciiLower(request.user),
           result.status, result.status == core::AuthStatus::Ok);
    return result;
}

void LoginRecordingAuthService::record(const core::AuthRequest& request, const std::string& user,
                                       core::AuthStatus status, bool verified) {
    // A name that is not UTF-8, or longer than any address, is no account (and in a cluster
    // PostgreSQL would refuse the whole batch it is written in, stopping the detection).
    if (user.empty() || user.size() > core::MaxLoginLength || !core::isValidUtf8(user)) return;
    LoginEvent e;
    e.at = clock_();
    e.user = user;
    e.ip = request.client.host();
    e.protocol = request.service;
    e.mechanism = request.mechanism;
    e.tls = request.tls;
    e.result = resultName(status);
    e.verified = verified;
    if (verified) {
        // Under the name the client gave the penalty counts and asks which addresses it is
        // known from: a directory may answer "jdoe" with "john.doe@example.com". Folded as
        // the penalty folds it ("ｊdoe", "JDOE" are one name: one entry, not one per spelling).
        std::string login = foldName(core::canonicalLogin(request.user));
        if (login != user && !login.empty() && login.size() <= core::MaxLoginLength && core::isValidUtf8(login))
            e.login = std::move(login);
    }
    security_.recordLogin(std::move(e));
}

}  // namespace postern::abuse
