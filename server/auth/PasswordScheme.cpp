// Password schemes: verify a stored "{SCHEME}hash" (Dovecot-compatible names) and make new
// hashes with libcrypt, libargon2 and OpenSSL.
#include "auth/PasswordScheme.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>
#include <Poco/Exception.h>

#include <argon2.h>
#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace postern::auth {
namespace {

using Bytes = std::vector<unsigned char>;

// New-hash costs, declared once. Argon2id: OWASP's minimum (19 MiB, 2 passes, 1 lane) keeps a
// login near 30 ms and bounds memory when many clients log in at once.
constexpr std::uint32_t Argon2TimeCost = 2;
constexpr std::uint32_t Argon2MemoryKiB = 19 * 1024;
constexpr std::uint32_t Argon2Lanes = 1;
constexpr std::size_t Argon2SaltBytes = 16;
constexpr std::size_t Argon2HashBytes = 32;
constexpr unsigned long BcryptCost = 10;
constexpr unsigned long Sha512CryptRounds = 0;  // 0 = libcrypt's default (5000)

enum class Encoding { Default, Hex, Base64 };

std::string upper(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return out;
}

bool startsWith(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

bool constantTimeEqual(const void* a, const void* b, std::size_t n) {
    return CRYPTO_memcmp(a, b, n) == 0;
}

std::optional<Bytes> decodeHex(std::string_view s) {
    if (s.size() % 2 != 0) {
        return std::nullopt;
    }
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Bytes out;
    out.reserve(s.size() / 2);
    for (std::size_t i = 0; i < s.size(); i += 2) {
        int hi = nibble(s[i]);
        int lo = nibble(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out.push_back(static_cast<unsigned char>(hi << 4 | lo));
    }
    return out;
}

bool isHex(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

std::optional<Bytes> decodeBase64(std::string_view s) {
    // Poco's decoder skips whitespace, so reject it here: a stored hash has none.
    if (s.empty() || std::any_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); })) {
        return std::nullopt;
    }
    try {
        std::istringstream in{std::string(s)};
        Poco::Base64Decoder decoder(in);
        Bytes out;
        char c;
        while (decoder.get(c)) {
            out.push_back(static_cast<unsigned char>(c));
        }
        if (decoder.bad()) {
            return std::nullopt;
        }
        return out;
    } catch (const Poco::Exception&) {
        return std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::string encodeBase64(const unsigned char* data, std::size_t n) {
    std::ostringstream out;
    Poco::Base64Encoder encoder(out);
    encoder.rdbuf()->setLineLength(0);
    encoder.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
    encoder.close();
    return out.str();
}

std::optional<Bytes> digest(const EVP_MD* md, std::string_view password, const Bytes& salt) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    Bytes out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), password.data(), password.size()) != 1 ||
        (!salt.empty() && EVP_DigestUpdate(ctx.get(), salt.data(), salt.size()) != 1) ||
        EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1) {
        return std::nullopt;
    }
    out.resize(len);
    return out;
}

// {SHA*} and {SSHA*}: digest(password [+ salt]) [+ salt], base64 (or hex) encoded.
VerifyResult verifyDigest(std::string_view password, std::string_view value, const EVP_MD* md,
                          bool salted, Encoding encoding) {
    const auto mdLen = static_cast<std::size_t>(EVP_MD_get_size(md));
    std::optional<Bytes> raw;
    if (encoding == Encoding::Hex ||
        // Dovecot reads an unsalted digest of exactly hex length as hex.
        (encoding == Encoding::Default && !salted && value.size() == mdLen * 2 && isHex(value))) {
        raw = decodeHex(value);
    } else {
        raw = decodeBase64(value);
    }
    if (!raw || raw->size() < mdLen || (!salted && raw->size() != mdLen) ||
        (salted && raw->size() == mdLen)) {
        return VerifyResult::Malformed;
    }
    Bytes salt(raw->begin() + static_cast<std::ptrdiff_t>(mdLen), raw->end());
    auto computed = digest(md, password, salt);
    if (!computed || computed->size() != mdLen) {
        return VerifyResult::Malformed;
    }
    return constantTimeEqual(computed->data(), raw->data(), mdLen) ? VerifyResult::Match
                                                                   : VerifyResult::Mismatch;
}

// {PLAIN}: compare SHA-256 digests so neither the time nor an early exit tells the length.
VerifyResult verifyPlain(std::string_view password, std::string_view value, Encoding encoding) {
    std::string stored(value);
    if (encoding != Encoding::Default) {
        auto raw = encoding == Encoding::Hex ? decodeHex(value) : decodeBase64(value);
        if (!raw) {
            return VerifyResult::Malformed;
        }
        stored.assign(raw->begin(), raw->end());
    }
    auto a = digest(EVP_sha256(), password, {});
    auto b = digest(EVP_sha256(), stored, {});
    if (!a || !b) {
        return VerifyResult::Malformed;
    }
    return constantTimeEqual(a->data(), b->data(), a->size()) ? VerifyResult::Match
                                                              : VerifyResult::Mismatch;
}

// crypt_data is ~32 KiB: one per thread, wiped after every use (it holds password state).
crypt_data& threadCryptData() {
    thread_local std::unique_ptr<crypt_data> data = std::make_unique<crypt_data>();
    return *data;
}

// Runs crypt_r; returns nullopt on failure (libxcrypt returns a "*0"/"*1" failure token).
std::optional<std::string> runCrypt(const std::string& password, const std::string& setting) {
    crypt_data& data = threadCryptData();
    std::memset(&data, 0, sizeof data);
    const char* out = crypt_r(password.c_str(), setting.c_str(), &data);
    std::optional<std::string> result;
    if (out != nullptr && out[0] != '*') {
        result = std::string(out);
    }
    OPENSSL_cleanse(&data, sizeof data);
    return result;
}

VerifyResult verifyArgon2(std::string_view password, std::string_view value, argon2_type type) {
    std::string encoded(value);
    int rc = argon2_verify(encoded.c_str(), password.data(), password.size(), type);
    switch (rc) {
    case ARGON2_OK:
        return VerifyResult::Match;
    case ARGON2_VERIFY_MISMATCH:
        return VerifyResult::Mismatch;
    default:
        return VerifyResult::Malformed;
    }
}

VerifyResult verifyCrypt(std::string_view password, std::string_view value) {
    if (value.empty() || value.find('\0') != std::string_view::npos) {
        return VerifyResult::Malformed;
    }
    // shadow(5) convention: "!" or "*" in front means the account is locked.
    if (value[0] == '!' || value[0] == '*') {
        return VerifyResult::Mismatch;
    }
    // libcrypt does not know Argon2; unprefixed "$argon2id$..." values are common in the wild.
    if (startsWith(value, "$argon2id$")) {
        return verifyArgon2(password, value, Argon2_id);
    }
    if (startsWith(value, "$argon2i$")) {
        return verifyArgon2(password, value, Argon2_i);
    }
    std::string setting(value);
    switch (crypt_checksalt(setting.c_str())) {
    case CRYPT_SALT_OK:
    case CRYPT_SALT_METHOD_LEGACY:
    case CRYPT_SALT_TOO_CHEAP:
        break;
    case CRYPT_SALT_METHOD_DISABLED:
        return VerifyResult::Unsupported;
    default:
        return VerifyResult::Malformed;
    }
    // crypt() stops at NUL; "secret\0junk" must not match "secret".
    if (password.find('\0') != std::string_view::npos) {
        return VerifyResult::Mismatch;
    }
    auto computed = runCrypt(std::string(password), setting);
    if (!computed) {
        return VerifyResult::Malformed;
    }
    if (computed->size() != setting.size()) {
        return VerifyResult::Mismatch;
    }
    return constantTimeEqual(computed->data(), setting.data(), setting.size()) ? VerifyResult::Match
                                                                               : VerifyResult::Mismatch;
}

struct DigestScheme {
    std::string_view name;
    const EVP_MD* (*md)();
    bool salted;
};

// PLAIN-MD5 (hex by default: 32 hex digits), LDAP-MD5 (base64) and SMD5 are what PostfixAdmin
// and old Dovecot/OpenLDAP setups store; the digest code reads hex or base64 by length.
constexpr std::array<DigestScheme, 10> DigestSchemes{{
    {"PLAIN-MD5", &EVP_md5, false},
    {"LDAP-MD5", &EVP_md5, false},
    {"SMD5", &EVP_md5, true},
    {"SHA", &EVP_sha1, false},
    {"SHA1", &EVP_sha1, false},
    {"SHA256", &EVP_sha256, false},
    {"SHA512", &EVP_sha512, false},
    {"SSHA", &EVP_sha1, true},
    {"SSHA256", &EVP_sha256, true},
    {"SSHA512", &EVP_sha512, true},
}};

// Typed crypt schemes: the value must carry one of these prefixes.
struct CryptScheme {
    std::string_view name;
    std::array<std::string_view, 3> prefixes;
};

constexpr std::array<CryptScheme, 5> CryptSchemes{{
    {"SHA512-CRYPT", {"$6$", "", ""}},
    {"SHA256-CRYPT", {"$5$", "", ""}},
    {"BLF-CRYPT", {"$2y$", "$2b$", "$2a$"}},
    {"BCRYPT", {"$2y$", "$2b$", "$2a$"}},
    {"MD5-CRYPT", {"$1$", "", ""}},
}};

VerifyResult verifyScheme(std::string_view password, const std::string& scheme, Encoding encoding,
                          bool hasSuffix, std::string_view value) {
    for (const auto& d : DigestSchemes) {
        if (scheme == d.name) {
            return verifyDigest(password, value, d.md(), d.salted, encoding);
        }
    }
    if (scheme == "PLAIN" || scheme == "CLEARTEXT") {
        return verifyPlain(password, value, encoding);
    }
    // The remaining schemes carry their own text encoding; a suffix makes no sense for them.
    if (hasSuffix) {
        return VerifyResult::Unsupported;
    }
    if (scheme == "CRYPT") {
        return verifyCrypt(password, value);
    }
    // Dovecot's {MD5}: MD5-CRYPT when the value says so ("$1$"), else a plain MD5 digest.
    if (scheme == "MD5") {
        return startsWith(value, "$1$") ? verifyCrypt(password, value)
                                        : verifyDigest(password, value, EVP_md5(), false, Encoding::Default);
    }
    if (scheme == "ARGON2ID") {
        return startsWith(value, "$argon2id$") ? verifyArgon2(password, value, Argon2_id)
                                               : VerifyResult::Malformed;
    }
    if (scheme == "ARGON2I") {
        return startsWith(value, "$argon2i$") ? verifyArgon2(password, value, Argon2_i)
                                              : VerifyResult::Malformed;
    }
    for (const auto& c : CryptSchemes) {
        if (scheme != c.name) {
            continue;
        }
        bool prefixOk = std::any_of(c.prefixes.begin(), c.prefixes.end(), [&](std::string_view p) {
            return !p.empty() && startsWith(value, p);
        });
        return prefixOk ? verifyCrypt(password, value) : VerifyResult::Malformed;
    }
    return VerifyResult::Unsupported;
}

Bytes randomBytes(std::size_t n) {
    Bytes out(n);
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("cannot make a password salt: the OpenSSL random generator failed");
    }
    return out;
}

std::string makeCryptHash(const char* prefix, unsigned long count, std::string_view password) {
    if (password.find('\0') != std::string_view::npos) {
        throw std::runtime_error("a password for a crypt scheme cannot contain a NUL byte");
    }
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    // nullptr random bytes: libcrypt takes them from the kernel (getentropy).
    if (crypt_gensalt_rn(prefix, count, nullptr, 0, setting, sizeof setting) == nullptr) {
        throw std::runtime_error(std::string("crypt_gensalt failed for ") + prefix);
    }
    auto hash = runCrypt(std::string(password), setting);
    if (!hash) {
        throw std::runtime_error(std::string("crypt failed for ") + prefix);
    }
    return *hash;
}

std::string makeArgon2idHash(std::string_view password) {
    Bytes salt = randomBytes(Argon2SaltBytes);
    std::string encoded(argon2_encodedlen(Argon2TimeCost, Argon2MemoryKiB, Argon2Lanes,
                                          Argon2SaltBytes, Argon2HashBytes, Argon2_id),
                        '\0');
    int rc = argon2id_hash_encoded(Argon2TimeCost, Argon2MemoryKiB, Argon2Lanes, password.data(),
                                   password.size(), salt.data(), salt.size(), Argon2HashBytes,
                                   encoded.data(), encoded.size());
    if (rc != ARGON2_OK) {
        throw std::runtime_error(std::string("argon2id hashing failed: ") + argon2_error_message(rc));
    }
    encoded.resize(std::strlen(encoded.c_str()));
    return encoded;
}

}  // namespace

std::optional<HashScheme> parseHashScheme(std::string_view name) {
    const std::string n = upper(name);
    if (n == "ARGON2ID") return HashScheme::Argon2id;
    if (n == "BCRYPT" || n == "BLF-CRYPT") return HashScheme::Bcrypt;
    if (n == "SHA512-CRYPT") return HashScheme::Sha512Crypt;
    return std::nullopt;
}

std::string_view schemeName(HashScheme scheme) {
    switch (scheme) {
    case HashScheme::Argon2id: return "ARGON2ID";
    case HashScheme::Bcrypt: return "BLF-CRYPT";
    case HashScheme::Sha512Crypt: return "SHA512-CRYPT";
    }
    return "ARGON2ID";
}

std::string_view toString(VerifyResult result) {
    switch (result) {
    case VerifyResult::Match: return "match";
    case VerifyResult::Mismatch: return "mismatch";
    case VerifyResult::Unsupported: return "unsupported scheme";
    case VerifyResult::Malformed: return "malformed hash";
    }
    return "malformed hash";
}

namespace {
bool isDesCrypt(std::string_view v) {
    return v.size() == 13 && std::all_of(v.begin(), v.end(), [](char c) {
               return c == '.' || c == '/' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
           });
}
}  // namespace

VerifyResult verifyPassword(std::string_view password, std::string_view stored) noexcept {
    try {
        if (stored.empty()) {
            return VerifyResult::Malformed;
        }
        // Without a {SCHEME}: Dovecot's passwd-file reads the value as CRYPT. Taken as such
        // when it is one: "$id$..." (modular crypt), a shadow(5) locked entry ("!", "*",
        // "!$6$..."; never a match, an ordinary failed login) or a traditional DES crypt (13
        // characters of [./0-9A-Za-z]; a plaintext password stored by mistake that happens to
        // look like one is a wrong password here, as in Dovecot). Anything else (other
        // plaintext stored by mistake) stays a configuration error, never a "wrong password".
        if (stored[0] == '$' || stored[0] == '!' || stored[0] == '*' || isDesCrypt(stored)) {
            return verifyCrypt(password, stored);
        }
        if (stored[0] != '{') {
            return VerifyResult::Malformed;
        }
        auto close = stored.find('}');
        if (close == std::string_view::npos || close == 1) {
            return VerifyResult::Malformed;
        }
        std::string scheme = upper(stored.substr(1, close - 1));
        std::string_view value = stored.substr(close + 1);
        Encoding encoding = Encoding::Default;
        bool hasSuffix = false;
        if (auto dot = scheme.rfind('.'); dot != std::string::npos) {
            std::string suffix = scheme.substr(dot + 1);
            if (suffix == "HEX") {
                encoding = Encoding::Hex;
            } else if (suffix == "B64" || suffix == "BASE64") {
                encoding = Encoding::Base64;
            } else {
                return VerifyResult::Unsupported;
            }
            scheme.resize(dot);
            hasSuffix = true;
        }
        return verifyScheme(password, scheme, encoding, hasSuffix, value);
    } catch (...) {
        // Allocation failure and the like: a system problem, never "wrong password".
        return VerifyResult::Malformed;
    }
}

std::string makePasswordHash(HashScheme scheme, std::string_view password) {
    std::string prefix = "{" + std::string(schemeName(scheme)) + "}";
    switch (scheme) {
    case HashScheme::Argon2id:
        return prefix + makeArgon2idHash(password);
    case HashScheme::Bcrypt:
        // $2y$ is what Dovecot and PHP write; libcrypt computes it exactly as $2b$.
        return prefix + makeCryptHash("$2y$", BcryptCost, password);
    case HashScheme::Sha512Crypt:
        return prefix + makeCryptHash("$6$", Sha512CryptRounds, password);
    }
    throw std::runtime_error("unknown password scheme");
}

std::string makeDummyHash(HashScheme scheme) {
    Bytes secret = randomBytes(32);
    std::string password = encodeBase64(secret.data(), secret.size());
    OPENSSL_cleanse(secret.data(), secret.size());
    std::string hash = makePasswordHash(scheme, password);
    OPENSSL_cleanse(password.data(), password.size());
    return hash;
}

const std::string& dummyHash() {
    static const std::string hash = makeDummyHash(DefaultHashScheme);
    return hash;
}

}  // namespace postern::auth
