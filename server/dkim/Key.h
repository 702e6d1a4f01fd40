// DKIM keys: one private key of a (domain, selector), RSA (rsa-sha256, RFC 6376) or Ed25519
// (ed25519-sha256, RFC 8463), from and to PEM, and the DNS TXT record that publishes it.
// All through OpenSSL 3; no hand-written crypto.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

typedef struct evp_pkey_st EVP_PKEY;

namespace postern::dkim {

enum class Algorithm { Rsa, Ed25519 };

// "rsa" / "ed25519" (the k= tag and the CLI's --algorithm); a= is rsa-sha256 / ed25519-sha256.
std::string_view algorithmName(Algorithm a);
std::string_view signatureAlgorithm(Algorithm a);

class KeyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

using PKeyPtr = std::shared_ptr<EVP_PKEY>;

struct SigningKey {
    std::string domain;    // A-label, lower case
    std::string selector;  // lower case
    Algorithm algorithm = Algorithm::Rsa;
    PKeyPtr key;
};

// A PEM private key (PKCS#8 or traditional). Throws KeyError (not a key, an RSA key under
// 1024 bits, another key type).
SigningKey parsePrivateKey(std::string_view pem, const std::string& domain, const std::string& selector);

// A new key: RSA 2048 bits or Ed25519. Throws KeyError.
PKeyPtr generateKey(Algorithm a);
// PKCS#8 PEM of the private key.
std::string privateKeyPem(const PKeyPtr& key);
// The p= value: base64 of the DER SubjectPublicKeyInfo (RSA) or of the 32 raw octets (Ed25519).
std::string publicKeyBase64(const SigningKey& key);
// "v=DKIM1; k=rsa; p=..."
std::string txtRecordText(const SigningKey& key);
// The record as a zone file line: `sel._domainkey.example.com. IN TXT "..." "..."`, the text
// split into strings of at most 255 octets (RFC 1035 character-strings).
std::string txtRecordLine(const SigningKey& key);

// Names: a domain (LDH labels, A-label form) and a selector (RFC 6376 3.1: sub-domain labels).
bool validDomain(std::string_view domain);
bool validSelector(std::string_view selector);

}  // namespace postern::dkim
