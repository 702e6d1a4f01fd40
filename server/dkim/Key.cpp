#include "dkim/Key.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <vector>

namespace postern::dkim {

namespace {

std::string base64(const unsigned char* data, std::size_t size) {
    std::string out(4 * ((size + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
    out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    return out;
}

PKeyPtr wrap(EVP_PKEY* k) { return PKeyPtr(k, EVP_PKEY_free); }

bool validLabel(std::string_view l, bool allowUnderscore) {
    if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
    for (char c : l)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (allowUnderscore && c == '_')))
            return false;
    return true;
}

bool validName(std::string_view name, bool allowUnderscore) {
    if (name.empty() || name.size() > 253) return false;
    std::size_t pos = 0;
    while (true) {
        std::size_t dot = name.find('.', pos);
        if (!validLabel(name.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos),
                        allowUnderscore))
            return false;
        if (dot == std::string_view::npos) return true;
        pos = dot + 1;
    }
}

}  // namespace

std::string_view algorithmName(Algorithm a) { return a == Algorithm::Rsa ? "rsa" : "ed25519"; }
std::string_view signatureAlgorithm(Algorithm a) { return a == Algorithm::Rsa ? "rsa-sha256" : "ed25519-sha256"; }

bool validDomain(std::string_view domain) { return validName(domain, false) && domain.find('.') != std::string_view::npos; }
bool validSelector(std::string_view selector) { return validName(selector, false); }

SigningKey parsePrivateKey(std::string_view pem, const std::string& domain, const std::string& selector) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    if (!bio) throw KeyError("out of memory");
    PKeyPtr key = wrap(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    if (!key) throw KeyError("not a PEM private key");
    SigningKey k{domain, selector, Algorithm::Rsa, key};
    switch (EVP_PKEY_get_base_id(key.get())) {
    case EVP_PKEY_RSA:
        // RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits.
        if (EVP_PKEY_get_bits(key.get()) < 1024) throw KeyError("RSA key under 1024 bits");
        k.algorithm = Algorithm::Rsa;
        break;
    case EVP_PKEY_ED25519: k.algorithm = Algorithm::Ed25519; break;
    default: throw KeyError("neither an RSA nor an Ed25519 key");
    }
    return k;
}

PKeyPtr generateKey(Algorithm a) {
    EVP_PKEY* k = a == Algorithm::Rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048))
                                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (!k) throw KeyError("key generation failed");
    return wrap(k);
}

std::string privateKeyPem(const PKeyPtr& key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
        throw KeyError("cannot write the private key");
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

std::string publicKeyBase64(const SigningKey& key) {
    if (key.algorithm == Algorithm::Ed25519) {
        unsigned char raw[64];
        std::size_t len = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(key.key.get(), raw, &len) != 1) throw KeyError("cannot read the public key");
        return base64(raw, len);
    }
    int len = i2d_PUBKEY(key.key.get(), nullptr);
    if (len <= 0) throw KeyError("cannot encode the public key");
    std::vector<unsigned char> der(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    i2d_PUBKEY(key.key.get(), &p);
    return base64(der.data(), der.size());
}

std::string txtRecordText(const SigningKey& key) {
    return "v=DKIM1; k=" + std::string(algorithmName(key.algorithm)) + "; p=" + publicKeyBase64(key);
}

std::string txtRecordLine(const SigningKey& key) {
    const std::string text = txtRecordText(key);
    std::string line = key.selector + "._domainkey." + key.domain + ". IN TXT";
    for (std::size_t pos = 0; pos < text.size(); pos += 255) line += " \"" + text.substr(pos, 255) + "\"";
    return line;
}

}  // namespace postern::dkim
