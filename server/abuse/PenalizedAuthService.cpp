#include "abuse/PenalizedAuthService.h"

#include <Poco/Logger.h>

#include <thread>

namespace postern::abuse {

namespace {
Poco::Logger& logger() { return Poco::Logger::get("postern.auth"); }

// Client-supplied names go into the log: keep them on one line and short.
std::string clean(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 128)) out += (static_cast<unsigned char>(c) < 0x21 || c == '"') ? '?' : c;
    return out;
}
}  // namespace

PenalizedAuthService::PenalizedAuthService(core::AuthService& inner, AuthPenalty& penalty, Sleeper sleeper)
    : inner_(inner), penalty_(penalty), sleep_(std::move(sleeper)) {
    if (!sleep_) sleep_ = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
}

core::AuthResult PenalizedAuthService::authenticate(const core::AuthRequest& request) {
    core::AuthResult result;  // TempFail
    PenaltyVerdict v = penalty_.check(request.client, request.user);
    if (v.kind == PenaltyVerdict::Kind::TempFail) {
        logger().error("s=" + request.sessionId + " event=auth.fail svc=" + request.service + " ip=" + request.client.host() + " user=" + clean(request.user) +
                       " backend=penalty result=tempfail detail=\"penalty store unavailable\"");
        return result;
    }
    if (v.kind == PenaltyVerdict::Kind::Blocked) {
        // A blocked client waits the longest delay, then gets the refusal.
        if (v.delay.count() > 0) sleep_(v.delay);
        // One line per refused attempt, with IP and account: what fail2ban watches.
        logger().warning("s=" + request.sessionId + " event=auth.blocked svc=" + request.service +
                         " ip=" + request.client.host() + " user=" + clean(request.user) + " by=" + v.blockedBy +
                         " retry_after_s=" + std::to_string(v.retryAfter.count() / 1000));
        result.status = core::AuthStatus::Blocked;
        return result;
    }
    result = inner_.authenticate(request);
    if (result.status == core::AuthStatus::BadCredentials) {
        if (!penalty_.recordFailure(request.client, request.user))
            logger().error("s=" + request.sessionId + " event=penalty.store_fail ip=" + request.client.host());
        // Tarpit: only failures wait (as Dovecot's auth_failure_delay), growing with the
        // earlier failures of this IP or account. A correct password is never slowed down,
        // so a bot guessing one account cannot make its owner's logins slow; the reply code
        // tells success anyway, so delaying it would hide nothing.
        if (v.delay.count() > 0) sleep_(v.delay);
    } else if (result.status == core::AuthStatus::Ok) {
        penalty_.recordSuccess(request.client, request.user);
    }
    return result;
}

}  // namespace postern::abuse
