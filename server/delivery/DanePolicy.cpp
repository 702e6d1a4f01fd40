#include "delivery/DanePolicy.h"

#include <algorithm>

namespace postern::delivery {

const char* tlsPolicyName(TlsPolicy p) {
    switch (p) {
    case TlsPolicy::None: return "none";
    case TlsPolicy::May: return "may";
    case TlsPolicy::Encrypt: return "encrypt";
    case TlsPolicy::Verify: return "verify";
    case TlsPolicy::Dane: return "dane";
    case TlsPolicy::DaneOnly: return "dane-only";
    }
    return "?";
}

HostTls hostTlsPolicy(MxResolver& resolver, TlsPolicy routePolicy, const MxResult& where, const MxHost& host,
                      std::uint16_t port) {
    HostTls t;
    t.policy = routePolicy;
    t.label = tlsPolicyName(routePolicy);
    if (routePolicy != TlsPolicy::Dane && routePolicy != TlsPolicy::DaneOnly) return t;
    const bool only = routePolicy == TlsPolicy::DaneOnly;
    auto fallback = [&](const char* reason) {
        if (only) {
            t.usable = false;
            t.label = "dane";
            t.failure = reason;
        } else {
            t.policy = TlsPolicy::May;
            t.label = "may";
        }
        return t;
    };
    // RFC 7672 2.2.1/2.2.2: DANE only when the MX RRset and the host's addresses are secure.
    if (!where.mxSecure || !host.secure) return fallback("insecure_dns");
    // RFC 7672 2.2.2 / RFC 7671 7: an alias MX host (its CNAME chain secure, as its address
    // answers were) has its TLSA records looked up at the fully expanded name first, then,
    // without secure ones there, at the original name. The name they are found at is the
    // TLSA base domain.
    const bool alias = !host.expanded.empty() && host.expanded != host.name;
    std::string base = alias ? host.expanded : host.name;
    TlsaResult tlsa = resolver.resolveTlsa(base, port);
    if (alias && tlsa.status == LookupStatus::Ok && (!tlsa.secure || tlsa.records.empty())) {
        base = host.name;
        tlsa = resolver.resolveTlsa(base, port);
    }
    if (tlsa.status != LookupStatus::Ok) {
        t.tlsaSecure = true;  // unknown: treated as present (fail closed)
        t.usable = false;
        t.label = "dane";
        t.failure = "tlsa_lookup_failed";
        return t;
    }
    if (!tlsa.secure || tlsa.records.empty()) return fallback("no_tlsa");
    t.tlsaSecure = true;
    DaneTarget target;
    std::copy_if(tlsa.records.begin(), tlsa.records.end(), std::back_inserter(target.tlsa), tlsaUsable);
    if (target.tlsa.empty()) {
        // "Usable TLSA none": TLS is mandatory, but nothing can authenticate it.
        if (only) {
            t.usable = false;
            t.label = "dane";
            t.failure = "tlsa_unusable";
            return t;
        }
        t.policy = TlsPolicy::Encrypt;
        t.label = "encrypt";
        return t;
    }
    // SNI and reference identifiers of a DANE-TA chain (RFC 7672 2.2.2, 3.2.3, 8.1): the
    // TLSA base domain first (the SNI), and for an alias the other of expanded and original.
    target.names = {base};
    if (alias) target.names.push_back(base == host.name ? host.expanded : host.name);
    t.policy = TlsPolicy::Dane;
    t.label = "dane";
    t.dane = std::move(target);
    return t;
}

}  // namespace postern::delivery
