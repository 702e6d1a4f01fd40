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
    TlsaResult tlsa = resolver.resolveTlsa(host.name, port);
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
    // Reference identifiers of a DANE-TA chain (RFC 7672 3.2.2): the TLSA base domain, which
    // is the MX host name here (CNAMEs are followed by the resolver, not expanded by us).
    target.names = {host.name};
    t.policy = TlsPolicy::Dane;
    t.label = "dane";
    t.dane = std::move(target);
    return t;
}

}  // namespace postern::delivery
