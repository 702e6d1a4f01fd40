// Records every login attempt (result, IP, protocol, mechanism, TLS) in AccountSecurity
// for the login log and compromised-account detection; in front of the penalty decorator
// so refused (blocked) attempts are logged too. Adds no I/O to a login: recording is a
// push into memory, written in the background. Whether a failure is kept for the name the
// client gave is decided by the store at the flush (only tracked accounts: spraying random
// names creates no per-name state; AccountSecurityStore::flush).
//
// A success whose caller checks the penalty itself (AuthRequest::penaltyCheckedByCaller:
// POP3 in a cluster, app/ClusterPop3Login) is NOT recorded here: the caller records it with
// record() once it knows whether the penalty refused the login ("blocked") or not ("ok").
#pragma once

#include "abuse/AccountSecurity.h"
#include "core/AuthService.h"
#include "core/Clock.h"

namespace postern::abuse {

class LoginRecordingAuthService final : public core::AuthService {
public:
    LoginRecordingAuthService(core::AuthService& inner, AccountSecurity& security, core::Clock clock = {})
        : inner_(inner), security_(security), clock_(core::clockOrSystem(std::move(clock))) {}
    core::AuthResult authenticate(const core::AuthRequest& request) override;
    // Records one attempt whose password was right (the caller's penalty verdict on a
    // success): `user` is the canonical login; status Ok or Blocked.
    void record(const core::AuthRequest& request, const std::string& user, core::AuthStatus status) {
        record(request, user, status, true);
    }

private:
    // `verified`: the password was right (LoginEvent::verified).
    void record(const core::AuthRequest& request, const std::string& user, core::AuthStatus status, bool verified);

    core::AuthService& inner_;
    AccountSecurity& security_;
    core::Clock clock_;
};

}  // namespace postern::abuse
