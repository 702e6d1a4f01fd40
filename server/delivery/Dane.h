// DANE for SMTP (RFC 7672, RFC 7671, RFC 6698): TLSA records, their RDATA parser and the
// check of a server's certificate chain against them (DANE-EE(3) and DANE-TA(2), selectors
// Cert(0)/SPKI(1), matching types Full(0)/SHA2-256(1)/SHA2-512(2)).
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <Poco/Net/Context.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace postern::delivery {

struct TlsaRecord {
    std::uint8_t usage = 0;     // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
    std::uint8_t selector = 0;  // 0 full certificate, 1 SubjectPublicKeyInfo
    std::uint8_t mtype = 0;     // 0 exact, 1 SHA2-256, 2 SHA2-512
    std::vector<std::uint8_t> data;
    std::string str() const;  // "3 1 1 ab12..." (data shortened) for logs
    bool operator==(const TlsaRecord&) const = default;
};

// TLSA RDATA (RFC 6698 2.1) from DNS wire data, untrusted: nullopt when shorter than the
// three fixed octets, when the data is empty, or when a digest has the wrong length for its
// matching type (SHA2-256: 32, SHA2-512: 64 octets).
std::optional<TlsaRecord> parseTlsaRdata(const std::uint8_t* p, std::size_t n);

// RFC 7672 3.1: only DANE-TA(2) and DANE-EE(3) with known selector and matching type are
// usable for SMTP; PKIX-TA(0)/PKIX-EE(1) and unknown values are not.
bool tlsaUsable(const TlsaRecord& r);

struct DaneResult {
    bool ok = false;
    std::string matched;  // ok: the record that matched ("3 1 1 ab12...")
    std::string reason;   // !ok: why, for logs and the deferral text ("no_match", ...)
};

// Checks `chain` (as the server sent it, leaf first) against the usable records of `tlsa`
// (RFC 7672 3.1): DANE-EE(3) matches the leaf only, and then neither name nor validity is
// checked (3.1.1); DANE-TA(2) matches a certificate the server sent above the leaf, and the
// chain must then verify from the leaf up to it (dates included) with the leaf's name equal
// to one of `names` (the MX host name and the TLSA base domain, RFC 7672 3.2.2).
DaneResult daneCheck(const std::vector<X509*>& chain, const std::vector<TlsaRecord>& tlsa,
                     const std::vector<std::string>& names);

// A TLS client context for DANE sessions: no PKIX verification by OpenSSL, but every
// handshake records the peer's chain (leaf first) for DaneCapture in the same thread.
Poco::Net::Context::Ptr makeDaneContext();

// The chain of the last handshake made with a makeDaneContext() context in this thread.
// Begin before the handshake, take() after it; the handshake runs in the calling thread.
class DaneCapture {
public:
    DaneCapture();   // clears this thread's capture
    ~DaneCapture();  // frees it
    DaneCapture(const DaneCapture&) = delete;
    DaneCapture& operator=(const DaneCapture&) = delete;
    const std::vector<X509*>& chain() const;
};

}  // namespace postern::delivery
