#include "policyd/PolicyDelegation.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace postern::policyd {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.policyd"); }

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
    logger().information(core::EventLine("policy.on")
                             .add("service", endpoint->describe())
                             .add("roles", std::string(c.mx ? "mx" : "") + (c.mx && c.submission ? "," : "") +
                                               (c.submission ? "submission" : ""))
                             .add("timeout_ms", static_cast<long long>(c.timeout.count()))
                             .add("default_action", c.defaultAction)
                             .str());
    return d;
}

core::PolicyDecision PolicyDelegation::fallback() const {
    core::PolicyDecision d = default_;
    d.action = "default";
    return d;
}

core::PolicyDecision PolicyDelegation::check(const core::PolicyFacts& facts) {
    if (facts.submission ? !settings_.submission : !settings_.mx) return {};
    // "s=<session> event=<name> service=... to=<...>": the head of every line below. The
    // error and text values stay one token each (fail2ban-style patterns read them as \S+).
    auto line = [&](std::string_view event) {
        core::EventLine l = core::EventLine::inSession(facts.sessionId, event);
        l.add("service", settings_.client.endpoint.describe()).address("to", facts.recipient);
        return l;
    };
    const auto start = std::chrono::steady_clock::now();
    QueryResult q = client_.query(formatRequest(requestAttributes(facts)));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    core::PolicyDecision d = fallback();
    if (!q.ok) {
        logger().warning(line("policy.fail")
                             .add("error", q.error)
                             .add("tries", q.tries)
                             .add("elapsed_ms", static_cast<long long>(ms))
                             .add("result", "default_action")
                             .str());
        return d;
    }
    Response resp = parseResponse(q.response);
    if (!resp.ok) {
        logger().warning(
            line("policy.bad_response").add("error", resp.error).add("result", "default_action").str());
        return d;
    }
    ActionResult a = interpretAction(resp.action);
    switch (a.status) {
    case ActionStatus::Known:
        if (!a.note.empty()) logger().notice(line("policy.warn").add("text", a.note).str());
        return a.decision;
    case ActionStatus::Unsupported:
        logger().notice(line("policy.unsupported").add("action", a.decision.action).add("result", "dunno").str());
        return {};
    case ActionStatus::Unknown:
    case ActionStatus::Malformed: break;
    }
    logger().warning(line("policy.bad_action")
                         .add("action", a.decision.action)
                         .add("error", a.note)
                         .add("result", "default_action")
                         .str());
    return d;
}

}  // namespace postern::policyd
