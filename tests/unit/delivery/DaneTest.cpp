// DANE matching (RFC 7672 3, RFC 6698 2.1): TLSA RDATA parsing, usable records, DANE-EE(3)
// and DANE-TA(2) with selectors 0/1 and matching types 0/1/2, against certificates made
// here with OpenSSL (a self-signed leaf, a CA and leaves it signed).
#include "delivery/Dane.h"

#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>
#include <string>
#include <vector>

using namespace postern::delivery;

namespace {

struct Key {
    EVP_PKEY* k = nullptr;
    Key() { k = EVP_EC_gen("P-256"); }
    ~Key() { EVP_PKEY_free(k); }
};

void addExt(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    BOOST_REQUIRE(ext);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

// A certificate for `cn` (SAN DNS:cn), signed by issuerKey/issuer (self-signed if null).
// days < 0: expired.
X509* makeCert(const std::string& cn, EVP_PKEY* key, EVP_PKEY* issuerKey, X509* issuer, bool ca, long days = 2) {
    static long serial = 1;
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    if (days < 0) {
        X509_gmtime_adj(X509_getm_notBefore(x), days * 2 * 86400);
        X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    } else {
        X509_gmtime_adj(X509_getm_notBefore(x), -3600);
        X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    }
    X509_set_pubkey(x, key);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
        addExt(x, issuer ? issuer : x, NID_basic_constraints, "critical,CA:TRUE");
        addExt(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        addExt(x, issuer ? issuer : x, NID_subject_alt_name, ("DNS:" + cn).c_str());
    }
    BOOST_REQUIRE(X509_sign(x, issuerKey ? issuerKey : key, EVP_sha256()) > 0);
    return x;
}

std::vector<std::uint8_t> der(X509* x, int selector) {
    unsigned char* p = nullptr;
    int n = selector == 0 ? i2d_X509(x, &p) : i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &p);
    std::vector<std::uint8_t> out(p, p + n);
    OPENSSL_free(p);
    return out;
}

TlsaRecord tlsa(X509* x, std::uint8_t usage, std::uint8_t selector, std::uint8_t mtype) {
    TlsaRecord r{usage, selector, mtype, der(x, selector)};
    if (mtype != 0) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        EVP_Digest(r.data.data(), r.data.size(), d, &n, mtype == 1 ? EVP_sha256() : EVP_sha512(), nullptr);
        r.data.assign(d, d + n);
    }
    return r;
}

// A CA, a leaf for mx.example.net it signed, a self-signed leaf, an unrelated one.
struct Pki {
    Key caKey, leafKey, selfKey, otherKey;
    X509* ca = makeCert("Test CA", caKey.k, nullptr, nullptr, true);
    X509* leaf = makeCert("mx.example.net", leafKey.k, caKey.k, ca, false);
    X509* self = makeCert("anything.example", selfKey.k, nullptr, nullptr, false);
    X509* other = makeCert("mx.example.net", otherKey.k, nullptr, nullptr, false);
    ~Pki() {
        for (X509* x : {ca, leaf, self, other}) X509_free(x);
    }
    std::vector<X509*> chain() const { return {leaf, ca}; }
};

const std::vector<std::string> Names{"mx.example.net"};

}  // namespace

BOOST_AUTO_TEST_SUITE(dane)

BOOST_AUTO_TEST_CASE(parse_rdata) {
    std::vector<std::uint8_t> wire{3, 1, 1};
    wire.resize(3 + 32, 0xab);
    auto r = parseTlsaRdata(wire.data(), wire.size());
    BOOST_REQUIRE(r);
    BOOST_TEST(r->usage == 3);
    BOOST_TEST(r->selector == 1);
    BOOST_TEST(r->mtype == 1);
    BOOST_TEST(r->data.size() == 32u);
    BOOST_TEST(r->str() == "3 1 1 abababababababab...");
    // Too short, empty data, digest length not that of its type.
    BOOST_TEST(!parseTlsaRdata(wire.data(), 3));
    BOOST_TEST(!parseTlsaRdata(nullptr, 0));
    BOOST_TEST(!parseTlsaRdata(wire.data(), wire.size() - 1));
    std::vector<std::uint8_t> sha512{3, 0, 2};
    sha512.resize(3 + 64, 1);
    BOOST_TEST(parseTlsaRdata(sha512.data(), sha512.size()).has_value());
    BOOST_TEST(!parseTlsaRdata(sha512.data(), 3 + 32));
    // Unknown matching types keep any length (they are unusable, not malformed).
    std::vector<std::uint8_t> unknown{3, 1, 9, 1, 2};
    BOOST_TEST(parseTlsaRdata(unknown.data(), unknown.size()).has_value());
}

BOOST_AUTO_TEST_CASE(usable_records) {
    BOOST_TEST(tlsaUsable({3, 1, 1, {}}));
    BOOST_TEST(tlsaUsable({2, 0, 2, {}}));
    BOOST_TEST(tlsaUsable({3, 0, 0, {}}));
    BOOST_TEST(!tlsaUsable({0, 0, 1, {}}));  // PKIX-TA
    BOOST_TEST(!tlsaUsable({1, 1, 1, {}}));  // PKIX-EE
    BOOST_TEST(!tlsaUsable({4, 1, 1, {}}));
    BOOST_TEST(!tlsaUsable({3, 2, 1, {}}));
    BOOST_TEST(!tlsaUsable({3, 1, 3, {}}));
}

BOOST_AUTO_TEST_CASE(dane_ee_every_selector_and_matching_type) {
    Pki pki;
    for (std::uint8_t sel : {0, 1})
        for (std::uint8_t mt : {0, 1, 2}) {
            DaneResult r = daneCheck({pki.self}, {tlsa(pki.self, 3, sel, mt)}, Names);
            BOOST_TEST(r.ok, "3 " << int(sel) << " " << int(mt));
            BOOST_TEST(r.matched.rfind("3 " + std::to_string(sel) + " " + std::to_string(mt) + " ", 0) == 0u);
        }
    // DANE-EE ignores the name (the self-signed leaf is not for mx.example.net) and expiry.
    Key k;
    X509* expired = makeCert("old.example", k.k, nullptr, nullptr, false, -1);
    BOOST_TEST(daneCheck({expired}, {tlsa(expired, 3, 1, 1)}, Names).ok);
    X509_free(expired);
}

BOOST_AUTO_TEST_CASE(dane_ee_mismatch) {
    Pki pki;
    DaneResult r = daneCheck({pki.self}, {tlsa(pki.other, 3, 1, 1), tlsa(pki.other, 3, 0, 2)}, Names);
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.reason == "no_match");
    // One flipped bit of the digest.
    TlsaRecord t = tlsa(pki.self, 3, 1, 1);
    t.data[5] ^= 0x01;
    BOOST_TEST(!daneCheck({pki.self}, {t}, Names).ok);
    // DANE-EE matches the leaf only, never a certificate above it.
    BOOST_TEST(!daneCheck(pki.chain(), {tlsa(pki.ca, 3, 1, 1)}, Names).ok);
    // A match among non-matching records is enough.
    BOOST_TEST(daneCheck({pki.self}, {tlsa(pki.other, 3, 1, 1), tlsa(pki.self, 3, 1, 1)}, Names).ok);
    // No certificate at all.
    BOOST_TEST(daneCheck({}, {tlsa(pki.self, 3, 1, 1)}, Names).reason == "no_peer_certificate");
}

BOOST_AUTO_TEST_CASE(dane_ta_chain_and_name) {
    Pki pki;
    for (std::uint8_t sel : {0, 1})
        for (std::uint8_t mt : {0, 1, 2})
            BOOST_TEST(daneCheck(pki.chain(), {tlsa(pki.ca, 2, sel, mt)}, Names).ok,
                       "2 " << int(sel) << " " << int(mt));
    // The name must be the MX host's (or another reference identifier given).
    DaneResult wrong = daneCheck(pki.chain(), {tlsa(pki.ca, 2, 0, 1)}, {"mx2.example.net"});
    BOOST_TEST(!wrong.ok);
    BOOST_TEST(wrong.reason == "ta_name_mismatch");
    BOOST_TEST(daneCheck(pki.chain(), {tlsa(pki.ca, 2, 0, 1)}, {"mx2.example.net", "mx.example.net"}).ok);
    // The TA must be in the chain the server sent; a leaf alone does not reach it.
    BOOST_TEST(!daneCheck({pki.leaf}, {tlsa(pki.ca, 2, 0, 1)}, Names).ok);
    // A leaf not signed by the TA does not verify up to it.
    BOOST_TEST(!daneCheck({pki.other, pki.ca}, {tlsa(pki.ca, 2, 0, 1)}, Names).ok);
    // DANE-TA of the leaf's own key is not a trust anchor for it (usage 2 looks above the leaf).
    BOOST_TEST(!daneCheck(pki.chain(), {tlsa(pki.leaf, 2, 1, 1)}, Names).ok);
}

BOOST_AUTO_TEST_CASE(dane_ta_expired_leaf) {
    Pki pki;
    Key k;
    X509* old = makeCert("mx.example.net", k.k, pki.caKey.k, pki.ca, false, -1);
    DaneResult r = daneCheck({old, pki.ca}, {tlsa(pki.ca, 2, 0, 1)}, Names);
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.reason == "ta_chain_expired");
    X509_free(old);
}

BOOST_AUTO_TEST_CASE(unusable_records_never_match) {
    Pki pki;
    // PKIX-EE(1) / PKIX-TA(0) of the exact certificate: not usable for SMTP (RFC 7672 3.1.3).
    BOOST_TEST(!daneCheck({pki.self}, {tlsa(pki.self, 1, 1, 1)}, Names).ok);
    BOOST_TEST(!daneCheck(pki.chain(), {tlsa(pki.ca, 0, 1, 1)}, Names).ok);
    TlsaRecord unknownType = tlsa(pki.self, 3, 1, 1);
    unknownType.mtype = 7;
    BOOST_TEST(!daneCheck({pki.self}, {unknownType}, Names).ok);
}

BOOST_AUTO_TEST_SUITE_END()
