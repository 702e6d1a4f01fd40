// Server-side TLS context (POCO NetSSL over OpenSSL 3) built once from the config:
// certificate, key, minimum version, TLS 1.2 cipher list, TLS 1.3 cipher suites, key
// exchange groups, server cipher preference, no compression, no renegotiation, and
// session resumption (tickets with rotated keys, plus a session-ID cache).
#pragma once

#include <Poco/Net/Context.h>

#include <chrono>
#include <cstddef>
#include <string>

namespace postern::net {

// Defaults here are only for tests; the daemon passes the configured values (the one
// documented default of each lives in ConfigSchema.cpp / etc/postern.properties).
struct TlsSettings {
    std::string certFile;
    std::string keyFile;
    std::string ecdsaCertFile;       // optional second chain with an ECDSA key ("" = none)
    std::string ecdsaKeyFile;
    // Every field is set from the tls.* key of the same name; the defaults live in the key
    // table (server/config/ConfigSchema.cpp) only.
    std::string minVersion;          // tls.min_version: "1.2" | "1.3" (anything else: 1.2)
    std::string ciphers;             // TLS 1.2 cipher list (OpenSSL syntax); empty = DefaultCiphers
    std::string ciphersuites;        // TLS 1.3 suites; empty = DefaultCipherSuites
    std::string groups;              // key exchange groups; empty = DefaultGroups
    std::chrono::seconds sessionLifetime{};    // tls.session_lifetime: session / ticket lifetime
    std::size_t sessionCacheSize = 0;          // tls.session_cache_size: session-ID cache entries (0 = no cache)
    std::chrono::seconds ticketKeyRotation{};  // tls.ticket_key_rotation: 0 = no tickets

    bool operator==(const TlsSettings&) const = default;
};

// ECDHE key exchange with AEAD ciphers only (Mozilla "intermediate" minus DHE):
// no CBC (LUCKY13, padding oracles), no RSA key exchange (no forward secrecy, ROBOT).
inline constexpr const char* DefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* DefaultCipherSuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
inline constexpr const char* DefaultGroups = "X25519:P-256:P-384";

// Certificates: the RSA (or any) chain of certFile/keyFile, and optionally an ECDSA chain
// beside it (ecdsaCertFile/ecdsaKeyFile). OpenSSL keeps one chain per key type and picks,
// per handshake, the one the client's signature algorithms allow (ECDSA first: a P-256
// signature costs the server a fraction of an RSA-2048 one); old RSA-only clients still
// get the RSA chain.
//
// Throws Poco::Exception with a readable message if the files or settings cannot be used.
//
// Session tickets: the ticket keys are process-wide (a SIGHUP reload builds a new context
// but keeps them, so tickets issued before stay valid). A new key is made every
// ticketKeyRotation (lazily, by the first handshake after that time); the previous key
// only decrypts (a ticket under it is renewed), and no key is older than two rotation
// periods. Keys live only in memory: a restart makes every ticket invalid (full handshake).
Poco::Net::Context::Ptr makeServerContext(const TlsSettings& settings);

}  // namespace postern::net
