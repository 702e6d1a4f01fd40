#include "delivery/Dane.h"

#include <openssl/evp.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>

namespace postern::delivery {

namespace {

thread_local std::vector<X509*> tChain;  // DaneCapture: the last DANE handshake's chain

void clearChain() {
    for (X509* x : tChain) X509_free(x);
    tChain.clear();
}

// SSL_VERIFY_PEER callback of the DANE context: record the chain as sent (leaf first) and
// accept it; daneCheck() decides after the handshake.
int captureChain(int /*preverify*/, X509_STORE_CTX* store) {
    if (!tChain.empty()) return 1;
    STACK_OF(X509)* sk = X509_STORE_CTX_get0_untrusted(store);
    if (sk) {
        for (int i = 0; i < sk_X509_num(sk); ++i) {
            X509* x = sk_X509_value(sk, i);
            X509_up_ref(x);
            tChain.push_back(x);
        }
    } else if (X509* leaf = X509_STORE_CTX_get0_cert(store)) {
        X509_up_ref(leaf);
        tChain.push_back(leaf);
    }
    return 1;
}

// DER of the certificate (selector 0) or of its SubjectPublicKeyInfo (selector 1).
std::vector<unsigned char> selected(X509* x, std::uint8_t selector) {
    unsigned char* der = nullptr;
    int len = selector == 0 ? i2d_X509(x, &der) : i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
    std::vector<unsigned char> out;
    if (len > 0) out.assign(der, der + len);
    OPENSSL_free(der);
    return out;
}

bool matches(X509* x, const TlsaRecord& r) {
    std::vector<unsigned char> der = selected(x, r.selector);
    if (der.empty()) return false;
    if (r.mtype == 0) return der == r.data;
    const EVP_MD* md = r.mtype == 1 ? EVP_sha256() : EVP_sha512();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(der.data(), der.size(), digest, &len, md, nullptr) != 1) return false;
    return len == r.data.size() && std::equal(digest, digest + len, r.data.begin());
}

// RFC 7671 5.2.2: the chain from the leaf must verify up to `anchor` (a certificate the
// server sent), and the leaf must carry one of `names`.
bool verifiesTo(const std::vector<X509*>& chain, X509* anchor, const std::vector<std::string>& names,
                std::string& why) {
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
    struct StackFree {
        void operator()(STACK_OF(X509) * sk) const { sk_X509_free(sk); }  // the certificates stay the caller's
    };
    std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
    if (!store || !ctx || !untrusted || X509_STORE_add_cert(store.get(), anchor) != 1) {
        why = "internal_error";
        return false;
    }
    for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i]);
    if (X509_STORE_CTX_init(ctx.get(), store.get(), chain[0], untrusted.get()) != 1) {
        why = "internal_error";
        return false;
    }
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
    // The anchor need not be self-signed (an intermediate CA is a valid DANE-TA).
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    bool first = true;
    for (const auto& n : names) {
        if (n.empty()) continue;
        if (first) X509_VERIFY_PARAM_set1_host(param, n.c_str(), n.size());
        else X509_VERIFY_PARAM_add1_host(param, n.c_str(), n.size());
        first = false;
    }
    if (X509_verify_cert(ctx.get()) == 1) return true;
    int err = X509_STORE_CTX_get_error(ctx.get());
    why = err == X509_V_ERR_HOSTNAME_MISMATCH ? "ta_name_mismatch"
        : err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID ? "ta_chain_expired"
        : std::string("ta_chain_invalid:") + X509_verify_cert_error_string(err);
    for (auto& c : why)
        if (c == ' ') c = '_';
    return false;
}

}  // namespace

std::string TlsaRecord::str() const {
    std::string hex;
    char b[3];
    for (std::size_t i = 0; i < data.size() && i < 8; ++i) {
        std::snprintf(b, sizeof b, "%02x", data[i]);
        hex += b;
    }
    if (data.size() > 8) hex += "...";
    return std::to_string(usage) + " " + std::to_string(selector) + " " + std::to_string(mtype) + " " + hex;
}

std::optional<TlsaRecord> parseTlsaRdata(const std::uint8_t* p, std::size_t n) {
    if (!p || n < 4) return std::nullopt;  // three octets and at least one of data
    TlsaRecord r;
    r.usage = p[0];
    r.selector = p[1];
    r.mtype = p[2];
    r.data.assign(p + 3, p + n);
    if (r.mtype == 1 && r.data.size() != 32) return std::nullopt;
    if (r.mtype == 2 && r.data.size() != 64) return std::nullopt;
    return r;
}

bool tlsaUsable(const TlsaRecord& r) {
    return (r.usage == 2 || r.usage == 3) && r.selector <= 1 && r.mtype <= 2;
}

DaneResult daneCheck(const std::vector<X509*>& chain, const std::vector<TlsaRecord>& tlsa,
                     const std::vector<std::string>& names) {
    DaneResult res;
    if (chain.empty() || !chain[0]) {
        res.reason = "no_peer_certificate";
        return res;
    }
    std::string taFailure;
    for (const auto& r : tlsa) {
        if (!tlsaUsable(r)) continue;
        if (r.usage == 3) {
            // RFC 7672 3.1.1: DANE-EE binds the key itself; name and dates do not matter.
            if (matches(chain[0], r)) {
                res.ok = true;
                res.matched = r.str();
                return res;
            }
            continue;
        }
        // DANE-TA(2): a certificate the server sent above the leaf.
        for (std::size_t i = 1; i < chain.size(); ++i) {
            if (!matches(chain[i], r)) continue;
            std::string why;
            if (verifiesTo(chain, chain[i], names, why)) {
                res.ok = true;
                res.matched = r.str();
                return res;
            }
            taFailure = why;
        }
    }
    res.reason = taFailure.empty() ? "no_match" : taFailure;
    return res;
}

Poco::Net::Context::Ptr makeDaneContext() {
    Poco::Net::Context::Params p;
    p.verificationMode = Poco::Net::Context::VERIFY_NONE;  // daneCheck() decides
    p.loadDefaultCAs = false;
    p.cipherList = "HIGH:!aNULL:!MD5:!RC4";
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
    ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
    ctx->enableExtendedCertificateVerification(false);
    // SSL_VERIFY_PEER only so that OpenSSL calls back with the chain; the callback accepts.
    SSL_CTX_set_verify(ctx->sslContext(), SSL_VERIFY_PEER, captureChain);
    return ctx;
}

DaneCapture::DaneCapture() { clearChain(); }
DaneCapture::~DaneCapture() { clearChain(); }
const std::vector<X509*>& DaneCapture::chain() const { return tChain; }

}  // namespace postern::delivery
