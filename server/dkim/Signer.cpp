#include "dkim/Signer.h"
#include "core/Utf8.h"

#include <openssl/evp.h>

#include <algorithm>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace postern::dkim {

namespace {

using MdCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

std::string base64(const unsigned char* data, std::size_t size) {
    std::string out(4 * ((size + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
    out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    return out;
}

std::vector<unsigned char> sign(const SigningKey& key, std::string_view data) {
    MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx) throw KeyError("out of memory");
    std::vector<unsigned char> toSign(data.begin(), data.end());
    const EVP_MD* md = EVP_sha256();
    if (key.algorithm == Algorithm::Ed25519) {
        // RFC 8463 3: PureEdDSA over the SHA-256 hash of the canonical header data.
        unsigned char hash[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_Digest(data.data(), data.size(), hash, &len, EVP_sha256(), nullptr) != 1)
            throw KeyError("SHA-256 failed");
        toSign.assign(hash, hash + len);
        md = nullptr;  // Ed25519 takes no digest of its own
    }
    if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key.key.get()) != 1) throw KeyError("sign init failed");
    std::size_t sigLen = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &sigLen, toSign.data(), toSign.size()) != 1)
        throw KeyError("sign failed");
    std::vector<unsigned char> sig(sigLen);
    if (EVP_DigestSign(ctx.get(), sig.data(), &sigLen, toSign.data(), toSign.size()) != 1)
        throw KeyError("sign failed");
    sig.resize(sigLen);
    return sig;
}

}  // namespace

const std::vector<std::string>& defaultSignedHeaders() {
    static const std::vector<std::string> names = {
        "from",        "to",          "cc",           "subject",    "date",
        "message-id",  "reply-to",    "in-reply-to",  "references", "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-language",
        "list-id",     "list-unsubscribe", "list-unsubscribe-post", "sender"};
    return names;
}

const std::vector<std::string>& defaultOversignedHeaders() {
    // Every signed name but the List-* fields (a list manager adds those, and re-signs):
    // a replayed message cannot gain a Reply-To, Cc or a MIME structure (review finding:
    // only five names were, as rspamd's defaults do for these).
    static const std::vector<std::string> names = {
        "from",         "to",           "cc",          "subject",      "date",
        "message-id",   "reply-to",     "in-reply-to", "references",   "mime-version",
        "content-type", "content-transfer-encoding", "content-disposition", "content-language", "sender"};
    return names;
}

std::vector<std::string> headerList(const std::vector<HeaderField>& headers) {
    std::vector<std::string> out;
    const auto& over = defaultOversignedHeaders();
    for (const auto& name : defaultSignedHeaders()) {
        std::size_t n = 0;
        for (const auto& h : headers)
            if (core::asciiLower(h.name) == name) ++n;
        if (std::find(over.begin(), over.end(), name) != over.end()) ++n;
        for (std::size_t i = 0; i < n; ++i) out.push_back(name);
    }
    return out;
}

std::string bodyHash(std::string_view body) {
    MdCtx ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw KeyError("SHA-256 init failed");
    bool ok = true;
    canonicalBody(body, Canon::Relaxed,
                  [&](std::string_view piece) { ok = ok && EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) == 1; });
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!ok || EVP_DigestFinal_ex(ctx.get(), hash, &len) != 1) throw KeyError("SHA-256 failed");
    return base64(hash, len);
}

std::string signParts(const MessageParts& parts, const std::string& bh, const SigningKey& key, std::time_t timestamp) {
    const std::vector<std::string> names = headerList(parts.headers);
    // RFC 6376 5.4.2: the n-th occurrence of a name in h= is the n-th field of that name
    // counted from the bottom; a name with no field left contributes nothing.
    // Each name's fields, bottom first, found in one pass over the header: a rescan per h=
    // entry was quadratic, and a submitted header of 100,000 short fields cost tens of
    // seconds of CPU per key.
    std::unordered_map<std::string, std::vector<std::size_t>> fieldsOf;
    for (std::size_t i = parts.headers.size(); i-- > 0;) fieldsOf[core::asciiLower(parts.headers[i].name)].push_back(i);
    std::unordered_map<std::string_view, std::size_t> usedOf;  // fields of the name signed so far
    std::string data;
    std::vector<std::string_view> signedNames;
    for (const auto& name : names) {
        signedNames.push_back(name);
        auto it = fieldsOf.find(name);
        if (it == fieldsOf.end()) continue;
        std::size_t& used = usedOf[name];
        if (used == it->second.size()) continue;
        data += canonicalHeader(parts.headers[it->second[used++]].raw, Canon::Relaxed);
    }
    std::string field = "DKIM-Signature: v=1; a=" + std::string(signatureAlgorithm(key.algorithm)) +
                        "; c=relaxed/relaxed; d=" + key.domain + "; s=" + key.selector +
                        ";\r\n\tt=" + std::to_string(static_cast<long long>(timestamp)) + "; h=";
    // h= folded after a ':' (FWS is allowed there, RFC 6376 3.5) to keep lines under 78
    // octets: every occurrence of a field adds its name, so hundreds of Cc: fields would
    // otherwise make one line past RFC 5322's 998.
    std::size_t lineLen = field.size() - field.rfind('\n') - 1;
    for (std::size_t i = 0; i < signedNames.size(); ++i) {
        if (i > 0) {
            field += ':';
            ++lineLen;
            if (lineLen + signedNames[i].size() + 1 > 78) {
                field += "\r\n\t";
                lineLen = 1;
            }
        }
        field += signedNames[i];
        lineLen += signedNames[i].size();
    }
    field += ";\r\n\tbh=" + bh + ";\r\n\tb=";
    // The signature field itself, with an empty b=, without its final CRLF (RFC 6376 3.7).
    std::string self = canonicalHeader(field, Canon::Relaxed);
    self.resize(self.size() - 2);
    data += self;
    std::vector<unsigned char> sig = sign(key, data);
    const std::string b = base64(sig.data(), sig.size());
    for (std::size_t pos = 0; pos < b.size(); pos += 64) {
        if (pos > 0) field += "\r\n\t ";
        field += b.substr(pos, 64);
    }
    field += "\r\n";
    return field;
}

std::string signMessage(std::string_view message, const SigningKey& key, std::time_t timestamp) {
    MessageParts parts = splitMessage(message);
    return signParts(parts, bodyHash(parts.body), key, timestamp);
}

}  // namespace postern::dkim
