#include "policyd/PolicyDelegation.h"

#include "core/LogValue.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace postern::policyd {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.policyd"); }

// One log token (core::logValue escapes blanks and control characters).
std::string token(const std::string& s) { return core::logValue(s); }

}  // namespace

std::optional<core::PolicyDecision> PolicyDelegation::parseDefaultAction(const std::string& action,
                                                                         std::string& error) {
    ActionResult a = interpretAction(action);
    if (a.status != ActionStatus::Known) {
        error = "'" + action + "' is not a policy action (e.g. 451 4.3.5 Server configuration problem, DEFER, DUNNO)";
        return std::nullopt;
    }
    if (a.decision.kind == core::PolicyDecision::Kind::Prepend) {
        error = "PREPEND cannot be the default action";
        return std::nullopt;
    }
    return a.decision;
}

PolicyDelegation::PolicyDelegation(PolicyDelegationSettings settings)
    : settings_(std::move(settings)), client_(settings_.client) {
    std::string error;
    auto d = parseDefaultAction(settings_.defaultAction, error);
    if (!d) throw std::invalid_argument("policy.default_action: " + error);
    default_ = *d;
}

std::unique_ptr<PolicyDelegation> PolicyDelegation::fromConfig(const config::PolicyServiceConfig& c) {
    if (c.service.empty()) return nullptr;
    std::string error;
    auto endpoint = PolicyEndpoint::parse(c.service, error);
    if (!endpoint) throw std::invalid_argument("policy.service: " + error);
    PolicyDelegationSettings s;
    s.client.endpoint = *endpoint;
    s.client.timeout = c.timeout;
    s.client.maxIdle = c.maxIdle;
    s.client.maxTtl = c.maxTtl;
    s.client.requestLimit = static_cast<unsigned>(std::max(0, c.requestLimit));
    s.client.tryLimit = static_cast<unsigned>(std::max(1, c.tryLimit));
    s.client.poolSize = static_cast<std::size_t>(std::max(0, c.poolSize));
    s.defaultAction = c.defaultAction;
    s.mx = c.mx;
    s.submission = c.submission;
    auto d = std::make_unique<PolicyDelegation>(std::move(s));
    logger().information("event=policy.on service=" + endpoint->describe() + " roles=" +
                         std::string(c.mx ? "mx" : "") + (c.mx && c.submission ? "," : "") +
                         (c.submission ? "submission" : "") + " timeout_ms=" + std::to_string(c.timeout.count()) +
                         " default_action=" + core::logValue(c.defaultAction));
    return d;
}

core::PolicyDecision PolicyDelegation::fallback() const {
    core::PolicyDecision d = default_;
    d.action = "default";
    return d;
}

core::PolicyDecision PolicyDelegation::check(const core::PolicyFacts& facts) {
    if (facts.submission ? !settings_.submission : !settings_.mx) return {};
    const std::string head = "s=" + facts.sessionId + " event=";
    const std::string who = " service=" + settings_.client.endpoint.describe() + " to=<" +
                            core::logValue(facts.recipient) + ">";
    const auto start = std::chrono::steady_clock::now();
    QueryResult q = client_.query(formatRequest(requestAttributes(facts)));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    core::PolicyDecision d = fallback();
    if (!q.ok) {
        logger().warning(head + "policy.fail" + who + " error=" + token(q.error) + " tries=" +
                         std::to_string(q.tries) + " elapsed_ms=" + std::to_string(ms) + " result=default_action");
        return d;
    }
    Response resp = parseResponse(q.response);
    if (!resp.ok) {
        logger().warning(head + "policy.bad_response" + who + " error=" + resp.error + " result=default_action");
        return d;
    }
    ActionResult a = interpretAction(resp.action);
    switch (a.status) {
    case ActionStatus::Known:
        if (!a.note.empty()) logger().notice(head + "policy.warn" + who + " text=" + token(a.note));
        return a.decision;
    case ActionStatus::Unsupported:
        logger().notice(head + "policy.unsupported" + who + " action=" + token(a.decision.action) +
                        " result=dunno");
        return {};
    case ActionStatus::Unknown:
    case ActionStatus::Malformed: break;
    }
    logger().warning(head + "policy.bad_action" + who + " action=" + token(a.decision.action) + " error=" +
                     token(a.note) + " result=default_action");
    return d;
}

}  // namespace postern::policyd
