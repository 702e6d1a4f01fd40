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
    // Every verification holds a place among the logins of its address and account in
    // progress on this node, and a guess is verified only while the counted failures plus
    // the others in progress stay below the limit; otherwise it waits for one of them to end
    // and checks again. So parallel guesses cannot exceed max_failures_* on one node.
    const auto deadline = std::chrono::steady_clock::now() + penalty_.settings().parallelWait;
    for (;;) {
        AuthPenalty::Reservation slot = penalty_.reserve(request.client, request.user);
        // A caller that checks the penalty itself (with a success, in one statement) is
        // checked first only when other logins of the address or account are in progress:
        // alone, every earlier guess is already counted when the caller reads the counters.
        // Also when this node counted failures during a database outage, which the caller's
        // statement does not see (a block must answer alike whatever the password).
        const bool checkFirst = !request.penaltyCheckedByCaller || slot.contended() ||
                                penalty_.hasLocalCounts(request.client, request.user);
        PenaltyVerdict v;
        if (checkFirst) {
            if (auto refused = check(request, v, slot)) return *refused;
            if (!penalty_.admits(v, slot)) {
                if (penalty_.awaitRelease(slot, deadline))
                    continue;
                logTempFail(request, "other logins of this address or account still in progress",
                            Poco::Message::PRIO_WARNING);
                return core::AuthResult{};
            }
        }
        slot.markVerifying();
        core::AuthResult result = inner_.authenticate(request);
        if (result.status == core::AuthStatus::BadCredentials) {
            if (!checkFirst) {
                // Checked now, before the answer: blocked -> the same refusal (after the
                // same longest delay) a correct password gets from the caller, not counted.
                if (auto refused = check(request, v, slot)) return *refused;
            }
            recordFailure(request, v, slot);
        } else if (result.status == core::AuthStatus::Ok && !request.penaltyCheckedByCaller) {
            penalty_.recordSuccess(request.client, request.user, v);
            if (v.viaKnownAddress) noteKnownAddress(request, v);
        }
        return result;
    }
}

std::optional<core::AuthResult> PenalizedAuthService::check(const core::AuthRequest& request, PenaltyVerdict& v,
                                                            AuthPenalty::Reservation& slot) {
    v = penalty_.check(request.client, request.user);
    if (v.kind == PenaltyVerdict::Kind::TempFail) {
        logTempFail(request, "penalty store unavailable", Poco::Message::PRIO_ERROR);
        return core::AuthResult{};
    }
    if (v.isBlocked()) return blocked(request, v, slot);
    return std::nullopt;
}

core::AuthResult PenalizedAuthService::blocked(const core::AuthRequest& request, const PenaltyVerdict& v,
                                               AuthPenalty::Reservation& slot) {
    slot.release();  // not while waiting out the delay
    refuseBlocked(request, v);
    core::AuthResult result;
    result.status = core::AuthStatus::Blocked;
    return result;
}

void PenalizedAuthService::logTempFail(const core::AuthRequest& request, std::string_view detail,
                                       Poco::Message::Priority priority) {
    logger().log(Poco::Message("postern.auth",
                               core::EventLine::inSession(request.sessionId, "auth.fail")
                                   .add("svc", request.service)
                                   .add("ip", request.client.host())
                                   .add("user", request.user)
                                   .add("backend", "penalty")
                                   .add("result", "tempfail")
                                   .text("detail", detail)
                                   .str(),
                               priority));
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

void PenalizedAuthService::noteKnownAddress(const core::AuthRequest& request, const PenaltyVerdict& v) {
    // The account is blocked by failures from elsewhere; its owner's device got through.
    logger().notice(core::EventLine::inSession(request.sessionId, "auth.known_address")
                        .add("svc", request.service)
                        .add("ip", request.client.host())
                        .add("user", request.user)
                        .add("account_failures", v.accountFailures)
                        .str());
}

void PenalizedAuthService::recordFailure(const core::AuthRequest& request, const PenaltyVerdict& v,
                                         AuthPenalty::Reservation& slot) {
    if (!penalty_.recordFailure(request.client, request.user, v))
        logger().error(core::EventLine::inSession(request.sessionId, "penalty.store_fail")
                           .add("ip", request.client.host())
                           .str());
    slot.release();  // counted: the next guess may go on while this one waits
    // Tarpit: only failures wait (as Dovecot's auth_failure_delay), growing with the
    // earlier failures of this IP or account. A correct password is never slowed down,
    // so a bot guessing one account cannot make its owner's logins slow; the reply code
    // tells success anyway, so delaying it would hide nothing.
    if (v.delay.count() > 0) sleep_(v.delay);
}

}  // namespace postern::abuse
