// Password schemes: verify a stored "{SCHEME}hash" (Dovecot-compatible names) and make new
// hashes. All crypto comes from libcrypt (libxcrypt), libargon2 and OpenSSL; nothing hand-written.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::auth {

// Match: the password is right. Mismatch: it is wrong (or the account is locked, "!"/"*").
// Unsupported: the scheme is not one we know (or libcrypt has it disabled). Malformed: the
// stored value cannot be parsed. The last two are configuration problems: the caller must
// answer TempFail, never "wrong password".
enum class VerifyResult { Match, Mismatch, Unsupported, Malformed };

// Schemes for new hashes (posternctl hash-password, password changes).
enum class HashScheme { Argon2id, Bcrypt, Sha512Crypt };

inline constexpr HashScheme DefaultHashScheme = HashScheme::Argon2id;

// "ARGON2ID", "BCRYPT" (or "BLF-CRYPT"), "SHA512-CRYPT"; case-insensitive.
std::optional<HashScheme> parseHashScheme(std::string_view name);

// The Dovecot name written in front of new hashes: "ARGON2ID", "BLF-CRYPT", "SHA512-CRYPT".
std::string_view schemeName(HashScheme scheme);

std::string_view toString(VerifyResult result);

// Verifies password against "{SCHEME}value". Schemes (case-insensitive): SHA512-CRYPT,
// SHA256-CRYPT, BLF-CRYPT, BCRYPT, MD5-CRYPT, CRYPT (anything crypt_r knows, incl. yescrypt),
// ARGON2ID, ARGON2I, SSHA512, SSHA256, SSHA, SHA512, SHA256, SHA (base64 by default; ".HEX",
// ".B64", ".BASE64" suffixes accepted), PLAIN-MD5 (hex), LDAP-MD5, SMD5, MD5 (MD5-CRYPT if the
// value starts with "$1$", else PLAIN-MD5), PLAIN, CLEARTEXT (also ".HEX"/".B64"). A value without
// "{SCHEME}" is CRYPT if it starts with '$', otherwise Malformed. Compares in constant time.
// Thread-safe; never throws.
VerifyResult verifyPassword(std::string_view password, std::string_view storedWithScheme) noexcept;

// Returns "{SCHEME}hash" with a fresh random salt. Costs: Argon2id t=2, m=19 MiB, p=1
// (OWASP minimum); bcrypt cost 10 ($2y$); SHA512-CRYPT 5000 rounds (libcrypt default).
// Throws std::runtime_error if the library or the random source fails. Thread-safe.
std::string makePasswordHash(HashScheme scheme, std::string_view password);

// A hash in `scheme` of a random password nobody knows. The facade verifies an unknown
// user's password against one so the answer time does not tell which users exist.
std::string makeDummyHash(HashScheme scheme);
// makeDummyHash(DefaultHashScheme), made once on first use.
const std::string& dummyHash();

}  // namespace postern::auth
