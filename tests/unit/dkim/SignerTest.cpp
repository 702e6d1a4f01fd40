// DKIM signatures: RFC 8463's Ed25519 example (key, body hash and signature checked with our
// canonicalisation), and our own RSA and Ed25519 signatures verified with OpenSSL against
// the public key the TXT record publishes. python3-dkim verifies them end to end
// (tests/e2e/test_dkim.py).
#include "dkim/Key.h"
#include "dkim/Signer.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <boost/test/unit_test.hpp>

#include <regex>
#include <vector>

using namespace postern::dkim;

namespace {

std::vector<unsigned char> unbase64(const std::string& text) {
    std::string clean;
    for (char c : text)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') clean += c;
    std::vector<unsigned char> out(clean.size());
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(clean.data()), static_cast<int>(clean.size()));
    BOOST_REQUIRE(n >= 0);
    std::size_t pad = 0;
    if (!clean.empty() && clean.back() == '=') ++pad;
    if (clean.size() > 1 && clean[clean.size() - 2] == '=') ++pad;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string tag(const std::string& fieldValue, const std::string& name) {
    std::smatch m;
    std::regex re("(^|;)\\s*" + name + "\\s*=([^;]*)");
    BOOST_REQUIRE(std::regex_search(fieldValue, m, re));
    return m[2].str();
}

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Verifies the first DKIM-Signature field of `signedMessage` the way a verifier does
// (RFC 6376 6.1.3), with the public key in DER (RSA SubjectPublicKeyInfo) or raw (Ed25519).
bool verify(const std::string& signedMessage, EVP_PKEY* pub) {
    MessageParts p = splitMessage(signedMessage);
    BOOST_REQUIRE(!p.headers.empty());
    const HeaderField& sig = p.headers.front();
    BOOST_REQUIRE(lower(std::string(sig.name)) == "dkim-signature");
    const std::string value(sig.raw.substr(sig.raw.find(':') + 1));
    if (unbase64(tag(value, "bh")) != unbase64(bodyHash(p.body))) return false;
    std::string h;
    for (char c : tag(value, "h"))
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') h += c;
    std::string data;
    std::vector<bool> used(p.headers.size(), false);
    std::size_t pos = 0;
    while (pos <= h.size()) {
        std::size_t colon = h.find(':', pos);
        std::string name = lower(h.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos));
        for (std::size_t i = p.headers.size(); i-- > 1;) {
            if (used[i] || lower(std::string(p.headers[i].name)) != name) continue;
            used[i] = true;
            data += canonicalHeader(p.headers[i].raw, Canon::Relaxed);
            break;
        }
        if (colon == std::string::npos) break;
        pos = colon + 1;
    }
    std::string emptied = std::regex_replace(std::string(sig.raw), std::regex("(;\\s*b=)[^;]*"), "$1");
    std::string self = canonicalHeader(emptied, Canon::Relaxed);
    data += self.substr(0, self.size() - 2);
    std::vector<unsigned char> b = unbase64(tag(value, "b"));
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_ED25519) {
        unsigned char hash[32];
        unsigned int len = 0;
        EVP_Digest(data.data(), data.size(), hash, &len, EVP_sha256(), nullptr);
        EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pub);
        return EVP_DigestVerify(ctx.get(), b.data(), b.size(), hash, len) == 1;
    }
    EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pub);
    return EVP_DigestVerify(ctx.get(), b.data(), b.size(), reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1;
}

// The public key as a verifier gets it: from the p= of the TXT record we print.
PKeyPtr publicFromRecord(const SigningKey& k) {
    const std::string text = txtRecordText(k);
    std::vector<unsigned char> der = unbase64(text.substr(text.find("p=") + 2));
    if (k.algorithm == Algorithm::Ed25519)
        return PKeyPtr(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, der.data(), der.size()), EVP_PKEY_free);
    const unsigned char* p = der.data();
    return PKeyPtr(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())), EVP_PKEY_free);
}

// RFC 8463 appendix A.
const std::string Rfc8463Seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const std::string Rfc8463Public = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const std::string Rfc8463Message =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";
const std::string Rfc8463Signature =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n";

SigningKey rfc8463Key() {
    std::vector<unsigned char> seed = unbase64(Rfc8463Seed);
    PKeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()), EVP_PKEY_free);
    BOOST_REQUIRE(k);
    return parsePrivateKey(privateKeyPem(k), "football.example.com", "brisbane");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(dkim_signer)

BOOST_AUTO_TEST_CASE(rfc8463_public_key_and_body_hash) {
    SigningKey k = rfc8463Key();
    BOOST_TEST((k.algorithm == Algorithm::Ed25519));
    BOOST_TEST(publicKeyBase64(k) == Rfc8463Public);
    BOOST_TEST(bodyHash(splitMessage(Rfc8463Message).body) == "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
}

BOOST_AUTO_TEST_CASE(rfc8463_example_signature_verifies_with_our_canonicalisation) {
    SigningKey k = rfc8463Key();
    BOOST_TEST(verify(Rfc8463Signature + Rfc8463Message, publicFromRecord(k).get()));
    // And a changed Subject breaks it (the check can fail).
    std::string changed = Rfc8463Signature + Rfc8463Message;
    changed.replace(changed.find("dinner"), 6, "supper");
    BOOST_TEST(!verify(changed, publicFromRecord(k).get()));
}

BOOST_AUTO_TEST_CASE(ed25519_signature_verifies) {
    SigningKey k = rfc8463Key();
    const std::string sig = signMessage(Rfc8463Message, k, 1528637909);
    BOOST_TEST(sig.rfind("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; s=brisbane;", 0) == 0);
    BOOST_TEST(verify(sig + Rfc8463Message, publicFromRecord(k).get()));
    // Ed25519 is deterministic: the same input, the same signature.
    BOOST_TEST(sig == signMessage(Rfc8463Message, k, 1528637909));
}

BOOST_AUTO_TEST_CASE(rsa_signature_verifies_and_breaks_on_change) {
    SigningKey k = parsePrivateKey(privateKeyPem(generateKey(Algorithm::Rsa)), "example.com", "rsa-1");
    BOOST_TEST((k.algorithm == Algorithm::Rsa));
    BOOST_TEST(EVP_PKEY_get_bits(k.key.get()) == 2048);
    const std::string msg = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody  \r\n\r\n";
    const std::string sig = signMessage(msg, k, 1700000000);
    BOOST_TEST(verify(sig + msg, publicFromRecord(k).get()));
    // Relaxed: whitespace changes in transit keep it valid; a new oversigned field breaks it.
    std::string reflowed = sig + "From: a@example.com\r\nTo:  b@example.net\r\nSubject: hi\r\n\r\nbody\r\n";
    BOOST_TEST(verify(reflowed, publicFromRecord(k).get()));
    std::string added = sig + "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\nSubject: other\r\n\r\nbody\r\n";
    BOOST_TEST(!verify(added, publicFromRecord(k).get()));
}

// Review finding: h= was one line, so 400 Cc: fields made the field's line longer than
// RFC 5322's 998 octets (and Postern's own MX refused it). It is folded after ':' now.
BOOST_AUTO_TEST_CASE(long_header_list_is_folded_and_verifies) {
    SigningKey k = rfc8463Key();
    std::string msg = "From: a@football.example.com\r\nTo: b@example.net\r\n";
    for (int i = 0; i < 400; ++i) msg += "Cc: c" + std::to_string(i) + "@example.net\r\n";
    msg += "Subject: many\r\n\r\nbody\r\n";
    const std::string sig = signMessage(msg, k, 1700000000);
    std::size_t longest = 0, lines = 0;
    for (std::size_t pos = 0; pos < sig.size(); ++lines) {
        const std::size_t end = sig.find("\r\n", pos);
        longest = std::max(longest, end - pos);
        pos = end + 2;
    }
    BOOST_TEST(longest < 100u);  // the first line (v= a= c= d= s=) is the longest
    BOOST_TEST(lines > 18u);     // 400 names of "cc:" need 16 lines of h=
    BOOST_TEST(sig.find(":\r\n\tcc:") != std::string::npos);
    BOOST_TEST(verify(sig + msg, publicFromRecord(k).get()));
    std::string changed = sig + msg;
    changed.replace(changed.find("c399@"), 4, "c999");
    BOOST_TEST(!verify(changed, publicFromRecord(k).get()));
}

// Repeated fields in any case, between unsigned ones, are signed bottom first (RFC 6376
// 5.4.2), each once; the fields are grouped by name in one pass (it was a rescan of the whole
// header per h= entry, quadratic in a header of many short fields).
BOOST_AUTO_TEST_CASE(repeated_fields_are_signed_bottom_first) {
    SigningKey k = rfc8463Key();
    std::string msg = "From: a@football.example.com\r\nTo: one@example.net\r\nX-Noise: 1\r\n";
    for (int i = 0; i < 50; ++i) msg += "X-Noise: " + std::to_string(i) + "\r\n";
    msg += "tO: two@example.net\r\nCc: c@example.net\r\nTO: three@example.net\r\nSubject: s\r\n\r\nbody\r\n";
    const std::string sig = signMessage(msg, k, 1700000000);
    BOOST_TEST(verify(sig + msg, publicFromRecord(k).get()));
    for (const char* field : {"one@", "two@", "three@"}) {
        std::string changed = sig + msg;
        changed.replace(changed.find(field), 3, "xyz");
        BOOST_TEST(!verify(changed, publicFromRecord(k).get()), field);
    }
    std::string noise = sig + msg;
    noise.replace(noise.find("X-Noise: 7"), 10, "X-Noise: 8");
    BOOST_TEST(verify(noise, publicFromRecord(k).get()));  // not a signed field
}

BOOST_AUTO_TEST_CASE(header_list_oversigns) {
    MessageParts p = splitMessage("From: a@x.example\r\nReceived: x\r\nTo: b\r\nTo: c\r\nX-Other: y\r\n\r\n");
    std::vector<std::string> h = headerList(p.headers);
    std::vector<std::string> expected = {"from",        "from",      "to",           "to",         "to",
                                         "cc",          "subject",   "date",         "message-id", "reply-to",
                                         "in-reply-to", "references", "mime-version", "content-type",
                                         "content-transfer-encoding", "content-disposition", "content-language",
                                         "sender"};
    BOOST_TEST(h == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(txt_record_chunks) {
    SigningKey k = parsePrivateKey(privateKeyPem(generateKey(Algorithm::Rsa)), "example.com", "s1");
    const std::string line = txtRecordLine(k);
    BOOST_TEST(line.rfind("s1._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p=", 0) == 0);
    std::string joined;
    std::regex str("\"([^\"]*)\"");
    for (auto it = std::sregex_iterator(line.begin(), line.end(), str); it != std::sregex_iterator(); ++it) {
        BOOST_TEST((*it)[1].length() <= 255);
        joined += (*it)[1].str();
    }
    BOOST_TEST(joined == txtRecordText(k));
    BOOST_TEST(joined.size() > 255u);  // RSA 2048: more than one string
}

BOOST_AUTO_TEST_CASE(bad_keys_refused) {
    BOOST_CHECK_THROW(parsePrivateKey("not a key", "example.com", "s"), KeyError);
    PKeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
    BOOST_CHECK_THROW(parsePrivateKey(privateKeyPem(ec), "example.com", "s"), KeyError);
    BOOST_TEST(validSelector("rsa-202612"));
    BOOST_TEST(!validSelector("../x"));
    BOOST_TEST(!validDomain("example"));
    BOOST_TEST(validDomain("xn--bcher-kva.example"));
}

BOOST_AUTO_TEST_SUITE_END()
