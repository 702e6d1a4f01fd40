// Internationalized domain names (RFC 5890-5893 IDNA2008, with the UTS #46 non-transitional
// mapping libidn2 applies: case folding and NFC before the IDNA2008 checks). Postern keeps
// every domain it compares in one form: A-labels, lower-case ("xn--bcher-kva.example"), so
// "bücher.example" and "xn--bcher-kva.example" are the same domain wherever a domain is
// compared (local domains, users, aliases, grants, sender rules, delivery routes).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::core {

// The A-label, lower-case form of `domain`. An ASCII domain without "xn--" labels is only
// lower-cased (no library call). A domain with non-ASCII octets (must be UTF-8) or with
// "xn--" labels goes through libidn2: invalid punycode, DISALLOWED code points, bad bidi or
// joiner context, a label over 63 octets -> nullopt. The result is not checked against the
// LDH label grammar (the path parser does that); an address literal must not be passed.
std::optional<std::string> domainToAscii(std::string_view domain);

// The U-label form of an A-label domain ("xn--bcher-kva.example" -> "bücher.example"), for
// asking a backend whose data holds the U-label form. nullopt if `domain` has no "xn--"
// label or does not decode.
std::optional<std::string> domainToUnicode(std::string_view domain);

// True if some label of `domain` starts with "xn--" (any case).
bool hasALabel(std::string_view domain);

// "local@domain" with the domain (after the last '@') in A-label lower-case form and the
// local part unchanged; `address` itself when it has no '@' or its domain does not convert
// (the caller's comparison then simply fails to match).
std::string normalizeAddressDomain(std::string_view address);

// The account a login name denotes, as the auth facade looks it up: the domain as above,
// then ASCII lower-cased ("Bob@Bücher.example" and "bob@xn--bcher-kva.example" are one).
std::string canonicalLogin(std::string_view login);

}  // namespace postern::core
