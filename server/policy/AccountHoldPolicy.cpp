#include "policy/AccountHoldPolicy.h"

namespace postern::policy {

std::optional<smtp::Reply> AccountHoldPolicy::check(const core::AuthIdentity* identity, const core::AccountHold* hold) {
    if (!identity || !hold) return std::nullopt;
    // The flagged accounts could not be read yet (the database was down at start): whether
    // this one is held is not known. RFC 3463 X.3.0: a temporary system problem. Asked first:
    // the set becoming known between two questions must not call an unheld account held.
    if (!hold->holdsKnown())
        return smtp::Reply(451, smtp::Enhanced::OtherSystem, "Account status cannot be checked now, try again later");
    if (!hold->isHeld(identity->user)) return std::nullopt;
    // RFC 3463 X.7.1: delivery not authorized; 451: try again later (after the release).
    return smtp::Reply(451, smtp::Enhanced::DeliveryNotAuthorized,
                       "Account held after unusual activity, contact your administrator");
}

}  // namespace postern::policy
