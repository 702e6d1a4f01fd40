// Records every login attempt (result, IP, protocol, mechanism, TLS) in AccountSecurity
// for the login log and compromised-account detection; in front of the penalty decorator
// so refused (blocked) attempts are logged too. Adds no I/O to a login: recording is a
// push into memory, written in the background.
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

private:
    core::AuthService& inner_;
    AccountSecurity& security_;
    core::Clock clock_;
};

}  // namespace postern::abuse
