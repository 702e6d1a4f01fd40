#include "net/TlsContext.h"

#include "core/EventLine.h"

#include <Poco/Exception.h>
#include <Poco/Logger.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

namespace postern::net {

namespace {

std::string opensslError() {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    if (e == 0) return "unknown error";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

// --- session ticket keys ------------------------------------------------------------
// Tickets (RFC 5077; TLS 1.3 PSK tickets) keep no state per session in the server, so no
// cache lock is shared by the session threads and resumption works for any number of
// clients. Their weakness is the key: with OpenSSL's built-in one (made once per context,
// never changed) whoever steals it can decrypt every recorded session of the process's
// lifetime. So the keys here are replaced on a schedule and wiped when dropped.

struct TicketKey {
    unsigned char name[16];
    unsigned char aes[32];   // AES-256-CBC: the ticket's own encryption (RFC 5077 4)
    unsigned char hmac[32];  // HMAC-SHA256 over it
    std::chrono::steady_clock::time_point created;
};

class TicketKeyRing {
public:
    void setRotation(std::chrono::seconds period) { rotation_.store(period.count()); }

    // The key to encrypt a new ticket with (rotated first when due).
    bool current(TicketKey& out) {
        std::lock_guard lock(mutex_);
        if (!rotateIfDue()) return false;
        out = *current_;
        return true;
    }

    // 0: unknown (or dropped) key -> full handshake; 1: the current key; 2: the previous
    // key (valid, but the client gets a new ticket under the current one).
    int find(const unsigned char name[16], TicketKey& out) {
        std::lock_guard lock(mutex_);
        if (!rotateIfDue()) return 0;
        if (std::memcmp(current_->name, name, sizeof current_->name) == 0) {
            out = *current_;
            return 1;
        }
        if (previous_ && std::memcmp(previous_->name, name, sizeof previous_->name) == 0) {
            out = *previous_;
            return 2;
        }
        return 0;
    }

private:
    bool rotateIfDue() {
        auto now = std::chrono::steady_clock::now();
        std::chrono::seconds period(rotation_.load());
        // Rotation is lazy (at the first handshake after a period), so the outgoing key can
        // sit in the ring past two periods after an idle time: dropped here, not used.
        if (previous_ && now - previous_->created >= 2 * period) wipe(previous_);
        if (current_ && now - current_->created < period) return true;
        TicketKey fresh{};
        if (RAND_priv_bytes(fresh.name, sizeof fresh.name) != 1 || RAND_priv_bytes(fresh.aes, sizeof fresh.aes) != 1 ||
            RAND_priv_bytes(fresh.hmac, sizeof fresh.hmac) != 1) {
            Poco::Logger::get("postern.tls")
                .error(core::EventLine("tls.ticket_key_fail").text("error", opensslError()).str());
            OPENSSL_cleanse(&fresh, sizeof fresh);
            return current_.has_value();  // keep serving with the old key rather than none
        }
        fresh.created = now;
        // The outgoing key may decrypt for one more period (so no key is used past two);
        // after a long idle time it is too old for that and is dropped as well.
        wipe(previous_);
        if (current_ && now - current_->created < 2 * period) previous_ = current_;
        else wipe(current_);
        current_ = fresh;
        OPENSSL_cleanse(&fresh, sizeof fresh);
        return true;
    }

    static void wipe(std::optional<TicketKey>& k) {
        if (k) OPENSSL_cleanse(&*k, sizeof *k);
        k.reset();
    }

    std::mutex mutex_;
    std::atomic<long long> rotation_{12 * 3600};
    std::optional<TicketKey> current_;
    std::optional<TicketKey> previous_;
};

TicketKeyRing& ticketKeys() {
    static TicketKeyRing ring;
    return ring;
}

bool setMacKey(EVP_MAC_CTX* hctx, unsigned char* key, std::size_t size) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, size),
                           OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

// SSL_CTX_set_tlsext_ticket_key_evp_cb: enc=1 -> fill name, IV and contexts for a new
// ticket (1 ok, -1 error); enc=0 -> set up decryption for the named key (0 unknown key,
// 1 ok, 2 ok and renew the ticket).
int ticketKeyCallback(SSL*, unsigned char* keyName, unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx,
                      int enc) {
    TicketKey k;
    int rc;
    if (enc) {
        if (!ticketKeys().current(k)) return -1;
        rc = RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1 &&
                     EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) == 1 &&
                     setMacKey(hctx, k.hmac, sizeof k.hmac)
                 ? 1
                 : -1;
        std::memcpy(keyName, k.name, sizeof k.name);
    } else {
        int which = ticketKeys().find(keyName, k);
        if (which == 0) return 0;
        rc = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) == 1 &&
                     setMacKey(hctx, k.hmac, sizeof k.hmac)
                 ? which
                 : -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

// The first certificate in certFile and the key in keyFile must be one pair, checked before
// the context loads them: POCO loads the key first, and OpenSSL 3 then silently drops a key
// that does not match the certificate loaded after it (ssl_set_cert), leaving a context that
// starts (or reloads) "ok" and fails every handshake. Postfix checks each pair likewise.
void checkPair(const std::string& certFile, const std::string& keyFile, const std::string& certKey,
               const std::string& keyKey) {
    using Bio = std::unique_ptr<BIO, decltype(&BIO_free)>;
    Bio certBio(BIO_new_file(certFile.c_str(), "r"), BIO_free);
    if (!certBio) throw Poco::InvalidArgumentException(certKey + ": cannot read '" + certFile + "'", opensslError());
    std::unique_ptr<X509, decltype(&X509_free)> cert(
        certBio ? PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr) : nullptr, X509_free);
    if (!cert) throw Poco::InvalidArgumentException(certKey + ": no certificate in '" + certFile + "'", opensslError());
    // No passphrase prompt on the terminal: an encrypted key is refused.
    pem_password_cb* noPassphrase = [](char*, int, int, void*) { return -1; };
    Bio keyBio(BIO_new_file(keyFile.c_str(), "r"), BIO_free);
    if (!keyBio) throw Poco::InvalidArgumentException(keyKey + ": cannot read '" + keyFile + "'", opensslError());
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        keyBio ? PEM_read_bio_PrivateKey(keyBio.get(), nullptr, noPassphrase, nullptr) : nullptr, EVP_PKEY_free);
    if (!key) throw Poco::InvalidArgumentException(keyKey + ": no (unencrypted) private key in '" + keyFile + "'",
                                                   opensslError());
    if (X509_check_private_key(cert.get(), key.get()) != 1)
        throw Poco::InvalidArgumentException(keyKey + " '" + keyFile + "' is not the key of " + certKey + " '" +
                                                 certFile + "'",
                                             opensslError());
}

// Loads the second (ECDSA) chain into its own slot of the context. Refuses a chain whose
// key is not EC (it would replace the RSA chain instead of standing beside it), a first
// chain (tls.cert_file) that is ECDSA itself (the second would replace it, and no RSA chain
// would be left), and a key that does not match the certificate.
void addEcdsaChain(SSL_CTX* ssl, const std::string& certFile, const std::string& keyFile) {
    X509* first = SSL_CTX_get0_certificate(ssl);  // tls.cert_file's leaf, loaded by POCO
    EVP_PKEY* firstKey = first ? X509_get0_pubkey(first) : nullptr;
    const bool firstIsEc = firstKey && EVP_PKEY_get_base_id(firstKey) == EVP_PKEY_EC;
    if (SSL_CTX_use_certificate_chain_file(ssl, certFile.c_str()) != 1)
        throw Poco::InvalidArgumentException("tls.ecdsa_cert_file: cannot load '" + certFile + "'", opensslError());
    X509* leaf = SSL_CTX_get0_certificate(ssl);  // the chain just loaded is the current one
    EVP_PKEY* pub = leaf ? X509_get0_pubkey(leaf) : nullptr;
    if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
        throw Poco::InvalidArgumentException("tls.ecdsa_cert_file: '" + certFile + "' is not an ECDSA certificate");
    if (firstIsEc)
        throw Poco::InvalidArgumentException(
            "tls.ecdsa_cert_file: tls.cert_file is an ECDSA certificate already (the second would replace it); "
            "set tls.cert_file to the RSA chain, or leave tls.ecdsa_cert_file empty");
    if (SSL_CTX_use_PrivateKey_file(ssl, keyFile.c_str(), SSL_FILETYPE_PEM) != 1)
        throw Poco::InvalidArgumentException("tls.ecdsa_key_file: cannot load '" + keyFile + "'", opensslError());
    if (SSL_CTX_check_private_key(ssl) != 1)
        throw Poco::InvalidArgumentException("tls.ecdsa_key_file does not match tls.ecdsa_cert_file", opensslError());
}

}  // namespace

Poco::Net::Context::Ptr makeServerContext(const TlsSettings& s) {
    checkPair(s.certFile, s.keyFile, "tls.cert_file", "tls.key_file");
    if (!s.ecdsaCertFile.empty()) checkPair(s.ecdsaCertFile, s.ecdsaKeyFile, "tls.ecdsa_cert_file", "tls.ecdsa_key_file");
    Poco::Net::Context::Params params;
    params.privateKeyFile = s.keyFile;
    params.certificateFile = s.certFile;
    params.verificationMode = Poco::Net::Context::VERIFY_NONE;  // clients are authenticated by SASL
    params.loadDefaultCAs = false;
    params.cipherList = s.ciphers.empty() ? DefaultCiphers : s.ciphers;
    // Only used by DHE suites, which the default list does not have; if an operator adds
    // them, at least not with 1024-bit parameters.
    params.dhUse2048Bits = true;
    params.ecdhCurve = s.groups.empty() ? DefaultGroups : s.groups;
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, params);
    SSL_CTX* ssl = ctx->sslContext();
    ctx->requireMinimumProtocol(s.minVersion == "1.3" ? Poco::Net::Context::PROTO_TLSV1_3
                                                      : Poco::Net::Context::PROTO_TLSV1_2);
    ctx->preferServerCiphers();
    std::string suites = s.ciphersuites.empty() ? DefaultCipherSuites : s.ciphersuites;
    // POCO ignores a cipher list with no usable name, which leaves OpenSSL's DEFAULT (static
    // RSA key exchange, CBC suites): set it here so a typo is refused.
    if (SSL_CTX_set_cipher_list(ssl, params.cipherList.c_str()) != 1)
        throw Poco::InvalidArgumentException("tls.ciphers: no usable TLS 1.2 cipher in '" + params.cipherList + "'",
                                             opensslError());
    if (SSL_CTX_set_ciphersuites(ssl, suites.c_str()) != 1)
        throw Poco::InvalidArgumentException("tls.ciphersuites: no usable TLS 1.3 suite in '" + suites + "'",
                                             opensslError());
    if (!s.ecdsaCertFile.empty()) addEcdsaChain(ssl, s.ecdsaCertFile, s.ecdsaKeyFile);
    // POCO passes the groups too, but check them here for a readable error.
    std::string groups = params.ecdhCurve;
    if (SSL_CTX_set1_groups_list(ssl, groups.c_str()) != 1)
        throw Poco::InvalidArgumentException("tls.groups: unknown group in '" + groups + "'", opensslError());
    // No TLS compression (CRIME) and no renegotiation at all: mail clients never need it,
    // and a client-initiated one costs the server a full handshake per request.
    // A peer's EOF without close_notify reads as an orderly end of input (OpenSSL 1.1.1's
    // behaviour) instead of a fatal error that also forbids our last write. SMTP and POP3
    // frame their own data (the "." line), so a cut-off message is still never taken; and
    // the drain at shutdown wakes idle sessions by shutting the socket's read side, after
    // which a TLS client must still get its 421 / -ERR, not an alert.
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    // Read ahead: one read(2) takes in every record that has arrived instead of two per
    // record (5-byte header, then body). Safe because
    // sessions wait for input in SSL_read itself (blocking sockets with SO_RCVTIMEO), never
    // in poll(2) on the descriptor, which could not see what OpenSSL has buffered.
    SSL_CTX_set_read_ahead(ssl, 1);

    // Session resumption saves a full handshake for clients that reconnect often
    // (mail programs polling POP3, submission bursts): tickets with rotated keys for
    // clients that take them, the session-ID cache for the others.
    if (s.sessionCacheSize > 0) {
        ctx->enableSessionCache(true, "postern");
        ctx->setSessionCacheSize(s.sessionCacheSize);
    } else {
        ctx->enableSessionCache(false);
    }
    ctx->setSessionTimeout(static_cast<long>(s.sessionLifetime.count()));  // also the ticket lifetime hint
    if (s.ticketKeyRotation.count() > 0) {
        ticketKeys().setRotation(s.ticketKeyRotation);
        SSL_CTX_clear_options(ssl, SSL_OP_NO_TICKET);
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ssl, ticketKeyCallback) != 1)
            throw Poco::IllegalStateException("cannot install the session ticket key callback", opensslError());
        // TLS 1.3: one ticket per handshake (OpenSSL's default is two). A mail program
        // reconnects one connection at a time, and every resumption brings it a new ticket.
        SSL_CTX_set_num_tickets(ssl, 1);
    } else {
        // TLS 1.2: no tickets; TLS 1.3: OpenSSL then issues stateful tickets (cache entries),
        // and none at all without a cache to find them in.
        SSL_CTX_set_options(ssl, SSL_OP_NO_TICKET);
        if (s.sessionCacheSize == 0) SSL_CTX_set_num_tickets(ssl, 0);
    }
    return ctx;
}

}  // namespace postern::net
