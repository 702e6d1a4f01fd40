// The TLS policy in force for one MX host under the route's policy (RFC 7672 2.2):
// dane / dane-only turn into DANE (secure usable TLSA), mandatory unauthenticated TLS
// ("usable TLSA none"), opportunistic TLS (no secure TLSA, dane only) or "host unusable".
#pragma once

#include "delivery/MxResolver.h"
#include "delivery/SmtpClient.h"

#include <optional>
#include <string>

namespace postern::delivery {

struct HostTls {
    TlsPolicy policy = TlsPolicy::May;  // what SmtpClient::open gets
    std::optional<DaneTarget> dane;     // policy Dane: the records to match
    bool usable = true;                 // false: do not connect (deferred, 4.7.5)
    std::string label;                  // tls_policy= in logs and metrics: dane|encrypt|may|...
    std::string failure;                // !usable: dane_fail= reason (no_tlsa, tlsa_lookup_failed, ...)
    bool tlsaSecure = false;            // secure TLSA records exist (usable or not), or their lookup failed
};

// RFC 8461 2: where DANE applies to a host (secure TLSA records: usable ones, or all
// unusable, or a failed lookup; or dane-only), MTA-STS is not applied to it.
inline bool daneGoverns(const HostTls& t) { return t.tlsaSecure || !t.usable; }

// The log/metrics name of a configured policy.
const char* tlsPolicyName(TlsPolicy p);

// For a route policy other than dane/dane-only: that policy as is, no lookup. Otherwise:
// MX RRset and host addresses secure -> TLSA lookup of _<port>._tcp.<host> (an alias host:
// of its CNAME-expanded name, then of its own name if no secure records were there):
//   secure, some usable      -> Dane with those records (label "dane")
//   secure, none usable      -> Encrypt (RFC 7672 2.2; dane-only: unusable, "tlsa_unusable")
//   none / insecure answer   -> May (dane-only: unusable, "no_tlsa")
//   lookup failed (SERVFAIL) -> unusable, "tlsa_lookup_failed" (never clear text)
// MX or addresses insecure   -> May (dane-only: unusable, "insecure_dns").
HostTls hostTlsPolicy(MxResolver& resolver, TlsPolicy routePolicy, const MxResult& where, const MxHost& host,
                      std::uint16_t port);

}  // namespace postern::delivery
