#include "abuse/PenalizedAuthService.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <thread>

namespace postern::abuse {

namespace {
Poco::Logger& logger() { return Poco::Logger::get("postern.auth"); }

}  // namespace

PenalizedAuthService::PenalizedAuthService(core::AuthService& inner, AuthPenalty& penalty, Sleeper sleeper)
    : inner_(inner), penalty_(penalty), sleep_(std::move(sleeper)) {
    if (!sleep_) sleep_ = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
}

core::AuthResult PenalizedAuthService::authenticate(const core::AuthRequest& request) {
    if (request.penaltyCheckedByCaller)
        return authenticateChecked(request);
    core::AuthResult result;  // TempFail
    PenaltyVerdict v = penalty_.check(request.client, request.user);
    if (v.kind == PenaltyVerdict::Kind::TempFail) {
        logStoreTempFail(request);
        return result;
    }
    if (v.kind == PenaltyVerdict::Kind::Blocked) {
        refuseBlocked(request, v);
        result.status = core::AuthStatus::Blocked;
        return result;
    }
    result = inner_.authenticate(request);
    if (result.status == core::AuthStatus::BadCredentials) {
        recordFailure(request, v);
    } else if (result.status == core::AuthStatus::Ok) {
        penalty_.recordSuccess(request.client, request.user, v);
    }
    return result;
}

core::AuthResult PenalizedAuthService::authenticateChecked(const core::AuthRequest& request) {
    // Verify first; the caller checks the penalty of a success. A failure is checked here,
    // before the answer: blocked -> the same refusal (after the same longest delay) a
    // correct password gets from the caller, and not counted (as before).
    core::AuthResult result = inner_.authenticate(request);
    if (result.status != core::AuthStatus::BadCredentials)
        return result;
    PenaltyVerdict v = penalty_.check(request.client, request.user);
    if (v.kind == PenaltyVerdict::Kind::TempFail) {
        logStoreTempFail(request);
        return core::AuthResult{};
    }
    if (v.kind == PenaltyVerdict::Kind::Blocked) {
        refuseBlocked(request, v);
        core::AuthResult blocked;
        blocked.status = core::AuthStatus::Blocked;
        return blocked;
    }
    recordFailure(request, v);
    return result;
}

void PenalizedAuthService::logStoreTempFail(const core::AuthRequest& request) {
    logger().error(core::EventLine::inSession(request.sessionId, "auth.fail")
                       .add("svc", request.service)
                       .add("ip", request.client.host())
                       .add("user", request.user)
                       .add("backend", "penalty")
                       .add("result", "tempfail")
                       .text("detail", "penalty store unavailable")
                       .str());
}

void PenalizedAuthService::refuseBlocked(const core::AuthRequest& request, const PenaltyVerdict& v) {
    // A blocked client waits the longest delay, then gets the refusal.
    if (v.delay.count() > 0) sleep_(v.delay);
    // One line per refused attempt, with IP and account: what fail2ban watches.
    logger().warning(core::EventLine::inSession(request.sessionId, "auth.blocked")
                         .add("svc", request.service)
                         .add("ip", request.client.host())
                         .add("user", request.user)
                         .add("by", v.blockedBy)
                         .add("retry_after_s", v.retryAfter.count() / 1000)
                         .str());
}

void PenalizedAuthService::recordFailure(const core::AuthRequest& request, const PenaltyVerdict& v) {
    if (!penalty_.recordFailure(request.client, request.user))
        logger().error(core::EventLine::inSession(request.sessionId, "penalty.store_fail")
                           .add("ip", request.client.host())
                           .str());
    // Tarpit: only failures wait (as Dovecot's auth_failure_delay), growing with the
    // earlier failures of this IP or account. A correct password is never slowed down,
    // so a bot guessing one account cannot make its owner's logins slow; the reply code
    // tells success anyway, so delaying it would hide nothing.
    if (v.delay.count() > 0) sleep_(v.delay);
}

}  // namespace postern::abuse
