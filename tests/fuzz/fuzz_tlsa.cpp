// Fuzz target: TLSA records from DNS wire data (a resolver's answer, untrusted):
// parseTlsaAnswer (libresolv's message parser + parseTlsaRdata), parseTlsaRdata on the raw
// bytes, daneCheck of the parsed records against a fixed certificate, and cnameExpanded (the
// CNAME chain of an address answer, RFC 7672 2.2.2).
// Invariants: never crashes; a parsed record with matching type 1/2 has a 32/64-octet
// digest; a record that is not usable never authenticates; only a record whose data is the
// certificate's own (impossible by chance) could match; an expanded name is lower-case
// without a trailing dot (or empty).
#include "FuzzAssert.h"
#include "delivery/Dane.h"
#include "delivery/MxResolver.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

using namespace postern::delivery;

namespace {

X509* fixedCert() {
    static X509* cert = [] {
        EVP_PKEY* key = EVP_EC_gen("P-256");
        X509* x = X509_new();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, key);
        X509_NAME* n = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("mx.example"), -1, -1, 0);
        X509_set_issuer_name(x, n);
        X509_sign(x, key, EVP_sha256());
        EVP_PKEY_free(key);
        return x;
    }();
    return cert;
}

void checkRecord(const TlsaRecord& r) {
    if (r.usage == 255) return;  // malformed RDATA kept as unusable
    if (r.mtype == 1) FUZZ_CHECK(r.data.size() == 32);
    if (r.mtype == 2) FUZZ_CHECK(r.data.size() == 64);
    FUZZ_CHECK(!r.data.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (auto r = parseTlsaRdata(data, size)) {
        checkRecord(*r);
        FUZZ_CHECK(r->data.size() == size - 3);
    }
    std::vector<TlsaRecord> records;
    if (parseTlsaAnswer(data, size, records)) {
        for (const auto& r : records) {
            checkRecord(r);
            if (!tlsaUsable(r)) FUZZ_CHECK(!daneCheck({fixedCert()}, {r}, {"mx.example"}).ok);
        }
        DaneResult d = daneCheck({fixedCert(), fixedCert()}, records, {"mx.example"});
        FUZZ_CHECK(d.ok || !d.reason.empty());
    }
    std::string expanded = cnameExpanded(data, size, "mx.example");
    if (!expanded.empty()) FUZZ_CHECK(expanded.back() != '.');
    for (char c : expanded) FUZZ_CHECK(!std::isupper(static_cast<unsigned char>(c)));
    return 0;
}
