// Where to deliver mail for a domain: MX lookup (RFC 5321 5.1) through libresolv
// (res_nquery + ns_initparse/ns_parserr), A/AAAA fallback, null MX (RFC 7505).
#pragma once

#include "delivery/Dane.h"

#include <Poco/Net/IPAddress.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace postern::delivery {

// Yes / no / try later: every DNS answer is one of these three.
enum class LookupStatus {
    Ok,        // hosts found
    PermFail,  // NXDOMAIN, null MX, no address at all: the mail bounces
    TempFail,  // SERVFAIL, timeout, unreachable resolver: retried later
};

struct MxRecord {
    std::uint16_t preference = 0;
    std::string host;  // without trailing dot; "" = the root (null MX target ".")
};

// One host to try, in order, with its addresses (A first, then AAAA).
struct MxHost {
    std::string name;
    std::uint16_t preference = 0;
    std::vector<Poco::Net::IPAddress> addresses;
    bool secure = false;  // every address answer was DNSSEC-authenticated (AD bit, RFC 7672 2.2)
    // The fully CNAME-expanded name of `name` as the address answers showed it ("" or equal
    // to `name`: not an alias). With `secure`, the whole CNAME chain was authenticated (the
    // AD bit covers every RRset of the answer, CNAMEs included).
    std::string expanded{};
};

struct MxResult {
    LookupStatus status = LookupStatus::TempFail;  // fail closed
    std::vector<MxHost> hosts;                     // Ok: at least one host with an address
    std::string enhanced;                          // failure: "5.1.2", "5.1.10", "4.4.3"
    std::string error;                             // failure: text for logs and the DSN
    bool mxSecure = false;  // the MX RRset (or its secure absence) was DNSSEC-authenticated
};

// TLSA records of one service name (RFC 6698, RFC 7672 2.2).
struct TlsaResult {
    LookupStatus status = LookupStatus::TempFail;  // Ok also when there are no records
    bool secure = false;                           // the answer had the AD bit
    std::vector<TlsaRecord> records;               // as published (usable or not)
    std::string error;                             // TempFail: text for logs
};

struct ResolverSettings {
    std::string server;                   // set from delivery.dns_server: "ip:port" (IPv4); "" = /etc/resolv.conf
    std::chrono::milliseconds timeout{};  // set from delivery.dns_timeout: per try; two tries
    // Some TLS policy is dane/dane-only: queries carry the DO bit (RES_USE_DNSSEC) and the
    // resolver's AD bit is trusted (RES_TRUSTAD), as Postfix's smtp_dns_support_level=dnssec.
    bool dnssec = false;
};

// RFC 5321 5.1: lowest preference first; hosts of equal preference in random order
// (spreads load). Null-MX records are kept (see isNullMx).
std::vector<MxRecord> orderMxRecords(std::vector<MxRecord> records, std::mt19937& rng);

// RFC 7505 3: a single MX with target "." (preference 0) says the domain takes no mail.
// A "." mixed with real MX records is ignored by the caller (it is not a null MX).
bool isNullMx(const std::vector<MxRecord>& records);

// The TLSA records in the answer section of DNS message `msg` (wire format, untrusted):
// false if the message is malformed. A record whose RDATA is malformed is kept as an
// unusable one (usage 255), so "records present, none usable" stays visible.
bool parseTlsaAnswer(const unsigned char* msg, std::size_t len, std::vector<TlsaRecord>& out);

// The CNAME chain from `qname` in the answer section of DNS message `msg` (wire format,
// untrusted), followed to its end: the fully expanded name (lower-case, no trailing dot),
// `qname` itself when it is not an alias, "" when the message is malformed or the chain
// loops. RFC 7672 2.2.2.
std::string cnameExpanded(const unsigned char* msg, std::size_t len, const std::string& qname);

// Stateless apart from settings; thread-safe (each lookup has its own res_state).
class MxResolver {
public:
    explicit MxResolver(ResolverSettings settings);
    virtual ~MxResolver() = default;

    // Mail for `domain` (lower-case, no trailing dot, or an address literal "[1.2.3.4]"):
    // Ok with hosts in delivery order; PermFail on NXDOMAIN (5.1.2), null MX (5.1.10) or
    // no MX host address; TempFail when the DNS cannot answer now (4.4.3).
    virtual MxResult resolveMx(const std::string& domain);

    // One named host (smarthost, transport override): A/AAAA only, no MX. An IP literal
    // is returned as is.
    virtual MxResult resolveHost(const std::string& host);

    // TLSA RRset of `_<port>._tcp.<host>`: Ok (possibly no records: NXDOMAIN/NODATA),
    // TempFail when the DNS cannot answer (SERVFAIL, which includes bogus data).
    virtual TlsaResult resolveTlsa(const std::string& host, std::uint16_t port);

private:
    ResolverSettings settings_;
};

}  // namespace postern::delivery
