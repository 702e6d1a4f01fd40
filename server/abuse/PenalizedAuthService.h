// The failed-authentication penalty in front of the auth service, for SMTP AUTH and
// POP3 alike: growing delays before answering (tarpit) and temporary blocks per client
// IP and per account, checked BEFORE the password so a block is no oracle.
#pragma once

#include "abuse/AuthPenalty.h"
#include "core/AuthService.h"

#include <Poco/Message.h>

#include <chrono>
#include <string_view>
#include <functional>
#include <optional>

namespace postern::abuse {

// Decorator over another AuthService (not owned). Thread-safe if the inner service is.
// Outcomes: penalty Blocked -> AuthStatus::Blocked after the longest delay (the inner
// service is not asked: no oracle); penalty store TempFail -> TempFail; otherwise asks the
// inner service; BadCredentials is recorded and answered after the verdict's delay (an
// outage is no guess and is not delayed; a success is never delayed). A request with
// penaltyCheckedByCaller is verified first and checked only when it failed (see AuthRequest),
// unless other logins of its address or account are in progress on this node.
// Parallel logins: a guess is verified only while the address's and the account's counted
// failures plus their other logins in progress stay below max_failures_*; otherwise it waits
// (up to auth.penalty.parallel_wait, then TempFail) for one to end and checks again.
class PenalizedAuthService final : public core::AuthService {
public:
    using Sleeper = std::function<void(std::chrono::milliseconds)>;

    PenalizedAuthService(core::AuthService& inner, AuthPenalty& penalty, Sleeper sleeper = {});
    core::AuthResult authenticate(const core::AuthRequest& request) override;

    // Refuses a blocked attempt as authenticate() does (the longest delay, the auth.blocked
    // line); for a caller that found the block itself (request.penaltyCheckedByCaller).
    void refuseBlocked(const core::AuthRequest& request, const PenaltyVerdict& v);
    // Logs a login let through an account block from a known address (event=auth.known_address).
    void noteKnownAddress(const core::AuthRequest& request, const PenaltyVerdict& v);

private:
    // Reads the penalty into v; an answer when its store is down (TempFail) or the login is
    // blocked, nothing when the verification may go on.
    std::optional<core::AuthResult> check(const core::AuthRequest& request, PenaltyVerdict& v,
                                          AuthPenalty::Reservation& slot);
    core::AuthResult blocked(const core::AuthRequest& request, const PenaltyVerdict& v,
                             AuthPenalty::Reservation& slot);
    void logTempFail(const core::AuthRequest& request, std::string_view detail, Poco::Message::Priority priority);
    void recordFailure(const core::AuthRequest& request, const PenaltyVerdict& v, AuthPenalty::Reservation& slot);

    core::AuthService& inner_;
    AuthPenalty& penalty_;
    Sleeper sleep_;
};

}  // namespace postern::abuse
