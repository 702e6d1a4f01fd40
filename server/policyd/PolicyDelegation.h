// The policy delegation step (Postfix check_policy_service): implements core::PolicyDelegate
// over PolicyClient and PolicyProtocol. Decides what a failure means: a policy server that
// is down, times out or answers nonsense gets the configured default action (451 4.3.5 by
// default, as Postfix's smtpd_policy_service_default_action), never a hang or an accept.
#pragma once

#include "config/ServerConfig.h"
#include "core/PolicyDelegate.h"
#include "policyd/PolicyClient.h"
#include "policyd/PolicyProtocol.h"

#include <memory>
#include <optional>
#include <string>

namespace postern::policyd {

struct PolicyDelegationSettings {
    PolicyClientSettings client;
    std::string defaultAction;  // set from policy.default_action
    bool mx = false;            // set from policy.roles: consult it for recipients on mx listeners
    bool submission = false;    // set from policy.roles: ... and on submission listeners
};

// Thread-safe (the client is).
class PolicyDelegation : public core::PolicyDelegate {
public:
    // Throws std::invalid_argument if the default action is not an action interpretAction()
    // knows (PREPEND is refused too: a failure cannot add a header).
    explicit PolicyDelegation(PolicyDelegationSettings settings);

    // From the policy.* keys: nullptr when policy.service is empty; throws
    // std::invalid_argument naming the key when the service or default action is invalid.
    // Connects to nothing (the first recipient does).
    static std::unique_ptr<PolicyDelegation> fromConfig(const config::PolicyServiceConfig& config);

    core::PolicyDecision check(const core::PolicyFacts& facts) override;

    PolicyClient& client() { return client_; }

    // The default action's decision, checked as the constructor does; nullopt + error if invalid.
    static std::optional<core::PolicyDecision> parseDefaultAction(const std::string& action, std::string& error);

private:
    core::PolicyDecision fallback() const;

    PolicyDelegationSettings settings_;
    core::PolicyDecision default_;
    PolicyClient client_;
};

}  // namespace postern::policyd
