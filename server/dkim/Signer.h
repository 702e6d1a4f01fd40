// The DKIM-Signature header field for a message and a key (RFC 6376 5; RFC 8463 for
// Ed25519): relaxed/relaxed, SHA-256, no l= (the whole body is signed).
#pragma once

#include "dkim/Canonical.h"
#include "dkim/Key.h"

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace postern::dkim {

// Signed when present: each occurrence, bottom-up (RFC 6376 5.4.2).
const std::vector<std::string>& defaultSignedHeaders();
// Also signed once more than they occur ("oversigned", RFC 6376 8.15): nobody can add
// another one (or the first one) after signing without breaking the signature.
const std::vector<std::string>& defaultOversignedHeaders();

// The h= list for these header fields: every occurrence of a listed name, plus one more
// for the oversigned names. Lower case, in the order of `names`.
std::vector<std::string> headerList(const std::vector<HeaderField>& headers);

// The complete "DKIM-Signature: ...\r\n" field (folded) to put in front of `message`.
// `message` is the stored message (CRLF lines). Throws KeyError if OpenSSL fails.
std::string signMessage(std::string_view message, const SigningKey& key, std::time_t timestamp);
// The same on an already split message (the signing sink signs once per key).
std::string signParts(const MessageParts& parts, const std::string& bodyHash, const SigningKey& key,
                      std::time_t timestamp);
// base64(SHA-256(relaxed body)) — the bh= value.
std::string bodyHash(std::string_view body);

}  // namespace postern::dkim
