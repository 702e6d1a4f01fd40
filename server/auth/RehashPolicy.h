// Rehash on login, the decision: which scheme a stored hash is in, and whether a successful
// login should replace it with a new hash in the configured scheme (auth.default_scheme).
// Pure functions; the work itself is done by auth::Rehasher, off the session's path.
#pragma once

#include "api/PluginApi.h"
#include "auth/PasswordScheme.h"

#include <optional>
#include <string>
#include <string_view>

namespace postern::auth {

// One name per scheme, Dovecot spelling, upper case: "{MD5}$1$..", "{CRYPT}$1$.." and "$1$.."
// are all "MD5-CRYPT"; "{BCRYPT}" and "$2y$.." are "BLF-CRYPT"; "{CLEARTEXT}" is "PLAIN";
// "{SHA1}" is "SHA"; encoding suffixes (".HEX", ".B64") are dropped; "{ARGON2ID}$argon2id$.."
// and "$argon2id$.." are "ARGON2ID". A crypt value whose method is not known here is "CRYPT".
// "" for an empty or unreadable value.
std::string storedSchemeOf(std::string_view stored);

// The same normalisation for a bare scheme name a backend reports ("bcrypt" -> "BLF-CRYPT",
// "cleartext" -> "PLAIN", "md5-crypt" -> "MD5-CRYPT"). "" stays "".
std::string canonicalSchemeName(std::string_view name);

// What a login told the facade, as far as rehashing is concerned.
struct RehashCandidate {
    bool loginSucceeded = false;  // the final outcome was Ok (never true for a failed login)
    const plugins::api::AuthAnswer* answer = nullptr;  // the deciding backend's answer
    std::size_t passwordLength = 0;                    // octets of the password that matched
};

// The scheme the login's stored hash is in (canonical name) if it should be replaced by a
// new hash in `target`; nullopt if not: the login failed, an application password matched,
// the scheme is unknown (a backend that verified itself and did not say), it is the target
// already, or the scheme reads only a prefix of the password and this one is not shorter
// than it: traditional DES crypt ("CRYPT": 8 octets) and bcrypt ("BLF-CRYPT": 72). Every
// password sharing that prefix matches there (the prefix itself too); a new hash of the one
// typed would lock out the owner's real password (an old laptop's "Sunshine2011", or
// "Sunshine", where the password is "Sunshine2010").
std::optional<std::string> rehashFrom(const RehashCandidate& candidate, HashScheme target);

}  // namespace postern::auth
