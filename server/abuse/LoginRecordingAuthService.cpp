#include "abuse/LoginRecordingAuthService.h"

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
    LoginEvent e;
    e.at = clock_();
    // A success is logged under the canonical login (what release, the queue and the
    // detection use); a failure under the name given (there is no other).
    e.user = result.status == core::AuthStatus::Ok && !result.identity.user.empty() ? result.identity.user
                                                                                     : request.user;
    e.ip = request.client.host();
    e.protocol = request.service;
    e.mechanism = request.mechanism;
    e.tls = request.tls;
    e.result = resultName(result.status);
    if (!e.user.empty()) security_.recordLogin(std::move(e));
    return result;
}

}  // namespace postern::abuse
