#include "core/GrantStore.h"

#include "core/Utf8.h"

#include <algorithm>

namespace postern::core {

bool grantBelongsTo(const Grant& grant, std::string_view sender) {
    if (sender.empty()) return false;
    const std::string from = asciiLower(sender);
    if (from == asciiLower(grant.user)) return true;
    return std::any_of(grant.senders.begin(), grant.senders.end(),
                       [&](const std::string& s) { return asciiLower(s) == from; });
}

const Grant* pickGrant(const std::vector<Grant>& grants, std::string_view sender) {
    const Grant* latest = nullptr;
    for (const Grant& g : grants) {
        if (grantBelongsTo(g, sender)) return &g;
        if (!latest || g.expires > latest->expires) latest = &g;
    }
    return latest;
}

}  // namespace postern::core
