// MTA-STS (RFC 8461): the policy file (section 3.2), the _mta-sts TXT record (3.1) and MX
// host name matching (4.1). Pure functions over untrusted text: no I/O, no exceptions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::mtasts {

enum class Mode { Enforce, Testing, None };

const char* modeName(Mode m);

// RFC 8461 3.2: max_age is at most 31557600 seconds (about a year).
constexpr std::uint32_t MaxMaxAge = 31557600;

struct Policy {
    Mode mode = Mode::None;
    std::uint32_t maxAge = 0;       // seconds
    std::vector<std::string> mx;    // lower-case patterns, "mail.example.net" or "*.example.net"
    // The published max_age was above MaxMaxAge and maxAge was capped to it (for the log;
    // a note about this fetch, not part of the policy: not compared, not cached).
    bool maxAgeCapped = false;
    bool operator==(const Policy& o) const { return mode == o.mode && maxAge == o.maxAge && mx == o.mx; }
};

// Parses a policy body (lines ending in LF or CRLF, "key: value"). Unknown keys are
// ignored; for version, mode and max_age the first occurrence counts; mx may repeat.
// nullopt (= the domain has no usable policy) when: version is not "STSv1", mode is
// missing or not enforce|testing|none, max_age is missing or not 1..10 digits, an mx
// pattern is malformed, or enforce/testing has no mx line. A max_age above MaxMaxAge is
// capped to it (maxAgeCapped), as other implementations do, not a reason to reject.
// `error` (if given) says why, for the log.
std::optional<Policy> parsePolicy(std::string_view body, std::string* error = nullptr);

// RFC 8461 4.1: `host` (an MX host name, any case, optional trailing dot) matches a
// pattern exactly, or "*.example.net" matches exactly one more leftmost label
// ("mx.example.net", not "example.net" nor "a.b.example.net").
bool mxMatches(std::string_view pattern, std::string_view host);
bool mxAllowed(const Policy& policy, std::string_view host);

// One TXT record (its strings concatenated) of _mta-sts.<domain>.
enum class TxtKind {
    NotSts,   // does not begin with "v=STSv1": some other TXT record, ignored
    Invalid,  // begins like one but breaks the RFC 8461 3.1 grammar
    Ok,
};
struct TxtRecord {
    TxtKind kind = TxtKind::NotSts;
    std::string id;  // Ok: 1..32 letters/digits
};
TxtRecord parseTxtRecord(std::string_view text);

// RFC 8461 3.1: of all TXT records, those not starting with v=STSv1 are dropped; exactly one
// valid record must remain, else the domain has no policy (nullopt). Returns its id.
std::optional<std::string> stsIdFromRecords(const std::vector<std::string>& records);

// A policy as one line "mode max_age mx1,mx2" (cache files, posternctl); parsePolicyLine
// reads it back (nullopt if malformed).
std::string policyLine(const Policy& p);
std::optional<Policy> parsePolicyLine(std::string_view line);

}  // namespace postern::mtasts
