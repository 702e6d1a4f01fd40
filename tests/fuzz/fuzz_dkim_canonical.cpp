// Fuzz target: DKIM canonicalisation and signing input (server/dkim), fed a whole message as
// an authenticated client may send it (any octets: bare CR/LF, NUL, 8-bit, endless lines,
// no empty line). Invariants: never crashes or throws; every canonical header ends in CRLF;
// relaxed body canonicalisation is idempotent and leaves no WSP before a CRLF and no empty
// line at the end; simple body output ends in CRLF; a From domain found is lower-case with no
// white space, and so is its local part; signing with an Ed25519 key always yields one
// DKIM-Signature field.
#include "FuzzAssert.h"
#include "dkim/Canonical.h"
#include "dkim/Key.h"
#include "dkim/Signer.h"

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::dkim;

namespace {

const SigningKey& fixedKey() {
    static const SigningKey key = [] {
        unsigned char seed[32];
        for (int i = 0; i < 32; ++i) seed[i] = static_cast<unsigned char>(i * 7 + 1);
        PKeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, sizeof seed), EVP_PKEY_free);
        return SigningKey{"example.com", "fuzz", Algorithm::Ed25519, k};
    }();
    return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view msg(reinterpret_cast<const char*>(data), size);
    MessageParts parts = splitMessage(msg);
    for (const auto& h : parts.headers) {
        for (Canon c : {Canon::Simple, Canon::Relaxed}) {
            std::string out = canonicalHeader(h.raw, c);
            FUZZ_CHECK(out.size() >= 2 && out.compare(out.size() - 2, 2, "\r\n") == 0);
        }
    }
    std::string relaxed = canonicalBodyString(parts.body, Canon::Relaxed);
    FUZZ_CHECK(canonicalBodyString(relaxed, Canon::Relaxed) == relaxed);
    FUZZ_CHECK(relaxed.find(" \r\n") == std::string::npos && relaxed.find("\t") == std::string::npos);
    FUZZ_CHECK(relaxed.size() < 4 || relaxed.compare(relaxed.size() - 4, 4, "\r\n\r\n") != 0);
    std::string simple = canonicalBodyString(parts.body, Canon::Simple);
    FUZZ_CHECK(simple.size() >= 2 && simple.compare(simple.size() - 2, 2, "\r\n") == 0);
    FromDomain from = fromDomain(parts.headers);
    if (from.problem.empty()) {
        FUZZ_CHECK(!from.domain.empty());
        for (char c : from.domain) FUZZ_CHECK(c != ' ' && c != '\t' && c != '\r' && c != '\n' && !(c >= 'A' && c <= 'Z'));
        // The local part compared with the user's addresses: lower-case, no blanks or '@'
        // of a quoted part (a quoted local part yields none).
        for (char c : from.local) FUZZ_CHECK(c != ' ' && c != '\t' && c != '\r' && c != '\n' && !(c >= 'A' && c <= 'Z'));
    } else {
        FUZZ_CHECK(from.local.empty() && from.domain.empty());
    }
    std::string sig = signMessage(msg, fixedKey(), 1700000000);
    FUZZ_CHECK(sig.rfind("DKIM-Signature: v=1; a=ed25519-sha256;", 0) == 0);
    FUZZ_CHECK(splitMessage(sig + "\r\n").headers.size() == 1);
    return 0;
}
