// The failed-authentication penalty in front of the auth service, for SMTP AUTH and
// POP3 alike: growing delays before answering (tarpit) and temporary blocks per client
// IP and per account, checked BEFORE the password so a block is no oracle.
#pragma once

#include "abuse/AuthPenalty.h"
#include "core/AuthService.h"

#include <chrono>
#include <functional>

namespace postern::abuse {

// Decorator over another AuthService (not owned). Thread-safe if the inner service is.
// Outcomes: penalty Blocked -> AuthStatus::Blocked after the longest delay (the inner
// service is not asked: no oracle); penalty store TempFail -> TempFail; otherwise asks the
// inner service; BadCredentials is recorded and answered after the verdict's delay (an
// outage is no guess and is not delayed; a success is never delayed).
class PenalizedAuthService final : public core::AuthService {
public:
    using Sleeper = std::function<void(std::chrono::milliseconds)>;

    PenalizedAuthService(core::AuthService& inner, AuthPenalty& penalty, Sleeper sleeper = {});
    core::AuthResult authenticate(const core::AuthRequest& request) override;

private:
    core::AuthService& inner_;
    AuthPenalty& penalty_;
    Sleeper sleep_;
};

}  // namespace postern::abuse
