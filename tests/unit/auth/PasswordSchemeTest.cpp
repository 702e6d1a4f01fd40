// Tests for password schemes: one row per scheme with hashes made by real tools (openssl passwd,
// mkpasswd, the argon2 CLI, python3 hashlib/crypt), the wrong password, and malformed values.
#include "auth/PasswordScheme.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <crypt.h>

#include <ostream>
#include <string>
#include <vector>

namespace postern::auth {
namespace {

const std::string Password = "S3cret pass!";

struct Row {
    std::string stored;
    std::string password;
    VerifyResult expected;
};

std::ostream& operator<<(std::ostream& out, const Row& r) {
    return out << r.stored << " / '" << r.password << "' -> " << toString(r.expected);
}

std::string name(VerifyResult r) { return std::string(toString(r)); }

// How each fixture was made (password "S3cret pass!"):
//   openssl passwd -6|-5|-1 -salt saltsalt; mkpasswd -m sha-512|bcrypt -R 5|yescrypt;
//   echo -n PW | argon2 somesaltsalt -id|-i -t 2 -m 12 -p 1 -e; python3 crypt.crypt(PW, "ab");
//   python3 base64(hashlib.shaX(PW [+ salt a1b2c3d4e5f60718]).digest() [+ salt]).
const std::vector<Row> Rows{
    // SHA512-CRYPT
    {"{SHA512-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password, VerifyResult::Match},
    {"{sha512-crypt}$6$nqx7d9Z7WrRvJU7F$1QNuk6gLqSuHsbOJMpBjQyc8vS7cz10dIBWzZFNvwa4NNSS0TIRebrwk5OfqoJgwUM1tPpZ0XyttMRI0D5lP11", Password, VerifyResult::Match},
    {"{SHA512-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", "S3cret pass", VerifyResult::Mismatch},
    {"{SHA512-CRYPT}$5$saltsalt$m7OaVA9mlZ3jN.z8y6l5CKQmRaooIVqP1VSEMpsq4I0", Password, VerifyResult::Malformed},
    {"{SHA512-CRYPT}", Password, VerifyResult::Malformed},
    // SHA256-CRYPT
    {"{SHA256-CRYPT}$5$saltsalt$m7OaVA9mlZ3jN.z8y6l5CKQmRaooIVqP1VSEMpsq4I0", Password, VerifyResult::Match},
    {"{SHA256-CRYPT}$5$saltsalt$m7OaVA9mlZ3jN.z8y6l5CKQmRaooIVqP1VSEMpsq4I0", "s3cret pass!", VerifyResult::Mismatch},
    {"{SHA256-CRYPT}5$saltsalt$m7OaVA9mlZ3jN.z8y6l5CKQmRaooIVqP1VSEMpsq4I0", Password, VerifyResult::Malformed},
    // MD5-CRYPT
    {"{MD5-CRYPT}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", Password, VerifyResult::Match},
    {"{MD5-CRYPT}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", "", VerifyResult::Mismatch},
    {"{MD5-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password, VerifyResult::Malformed},
    // BLF-CRYPT / BCRYPT ($2b$ from mkpasswd and python; $2y$/$2a$ compute the same for ASCII)
    {"{BLF-CRYPT}$2b$05$PKncVicrknyrBz6CIKM48.IQNptWkCCUZOJARG4Jjnx4qf6JNhKj6", Password, VerifyResult::Match},
    {"{BLF-CRYPT}$2y$05$PKncVicrknyrBz6CIKM48.IQNptWkCCUZOJARG4Jjnx4qf6JNhKj6", Password, VerifyResult::Match},
    {"{BCRYPT}$2a$05$PKncVicrknyrBz6CIKM48.IQNptWkCCUZOJARG4Jjnx4qf6JNhKj6", Password, VerifyResult::Match},
    {"{bcrypt}$2b$05$TyKG6f4S2XOQC776RksVLeyNTPkfWqHR0sHh46LN640fuEwHMFh/6", Password, VerifyResult::Match},
    {"{BLF-CRYPT}$2b$05$PKncVicrknyrBz6CIKM48.IQNptWkCCUZOJARG4Jjnx4qf6JNhKj6", "S3cret pass?", VerifyResult::Mismatch},
    {"{BLF-CRYPT}$2b$05$PKncVicrknyrBz6CIKM48", Password, VerifyResult::Malformed},
    {"{BLF-CRYPT}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", Password, VerifyResult::Malformed},
    // CRYPT: anything libcrypt knows (yescrypt, DES, ...), and "$..." without a scheme
    {"{CRYPT}$y$j9T$rX/s3RmQEXeHBmNmMf9h50$TA4/pHI2OcliD548OvfykUtTh1QC3rwje.vB3W1xPk6", Password, VerifyResult::Match},
    {"{CRYPT}$y$j9T$rX/s3RmQEXeHBmNmMf9h50$TA4/pHI2OcliD548OvfykUtTh1QC3rwje.vB3W1xPk6", "S3cret", VerifyResult::Mismatch},
    {"{CRYPT}abPAmMzNR85PQ", Password, VerifyResult::Match},
    {"{CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password, VerifyResult::Match},
    {"$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password, VerifyResult::Match},
    {"$y$j9T$rX/s3RmQEXeHBmNmMf9h50$TA4/pHI2OcliD548OvfykUtTh1QC3rwje.vB3W1xPk6", "wrong", VerifyResult::Mismatch},
    {"{CRYPT}!$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password, VerifyResult::Mismatch},
    {"{CRYPT}$99$nonsense$", Password, VerifyResult::Malformed},
    {"{CRYPT}", Password, VerifyResult::Malformed},
    // crypt() stops at NUL: "S3cret pass!\0x" must not match
    {"{SHA512-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password + std::string("\0x", 2), VerifyResult::Mismatch},
    // ARGON2ID / ARGON2I (argon2 CLI)
    {"{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$RqiIq8tI8KnJAIxCImhWKl5iQvfURRg3z7EDQMqyz9U", Password, VerifyResult::Match},
    {"{Argon2id}$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$RqiIq8tI8KnJAIxCImhWKl5iQvfURRg3z7EDQMqyz9U", "S3cret pass!!", VerifyResult::Mismatch},
    {"{ARGON2ID}$argon2i$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$wmMnrW4iLG1GUfgk/ijJVM39OnFFtx8FVLOyout+15w", Password, VerifyResult::Malformed},
    {"{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0", Password, VerifyResult::Malformed},
    {"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$wmMnrW4iLG1GUfgk/ijJVM39OnFFtx8FVLOyout+15w", Password, VerifyResult::Match},
    {"{ARGON2I}$argon2i$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$wmMnrW4iLG1GUfgk/ijJVM39OnFFtx8FVLOyout+15w", "nope", VerifyResult::Mismatch},
    {"$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$RqiIq8tI8KnJAIxCImhWKl5iQvfURRg3z7EDQMqyz9U", Password, VerifyResult::Match},
    // SHA, SHA256, SHA512 (base64 digest; Dovecot also reads hex and the .HEX/.B64 suffixes)
    {"{SHA}XhZYJz5Dlk7il2KCUZ2/EK9gM00=", Password, VerifyResult::Match},
    {"{SHA}XhZYJz5Dlk7il2KCUZ2/EK9gM00=", "x", VerifyResult::Mismatch},
    {"{SHA}XhZYJz5Dlk7il2KCUZ2/EK9g", Password, VerifyResult::Malformed},
    {"{SHA.HEX}5e1658273e43964ee2976282519dbf10af60334d", Password, VerifyResult::Match},
    {"{SHA256}ANVUrrQNZqUubAp3wPfEVHVyXHWW5XaC6D+FhCKJgeg=", Password, VerifyResult::Match},
    {"{SHA256}ANVUrrQNZqUubAp3wPfEVHVyXHWW5XaC6D+FhCKJgeg=", "S3cret pass! ", VerifyResult::Mismatch},
    {"{SHA256}00d554aeb40d66a52e6c0a77c0f7c45475725c7596e57682e83f8584228981e8", Password, VerifyResult::Match},
    {"{SHA256.hex}00d554aeb40d66a52e6c0a77c0f7c45475725c7596e57682e83f8584228981e8", Password, VerifyResult::Match},
    {"{SHA256.HEX}zzd554aeb40d66a52e6c0a77c0f7c45475725c7596e57682e83f8584228981e8", Password, VerifyResult::Malformed},
    {"{SHA256}!!!notbase64!!!", Password, VerifyResult::Malformed},
    {"{SHA512}tmzExE8afwb9t77rz082jAYNOahkd+1wWoAW2CxkFBKhgdkcOSQLfRDC76pR4CheZS7OxGRcr2FWWYgYAKcyxw==", Password, VerifyResult::Match},
    {"{SHA512.B64}tmzExE8afwb9t77rz082jAYNOahkd+1wWoAW2CxkFBKhgdkcOSQLfRDC76pR4CheZS7OxGRcr2FWWYgYAKcyxw==", Password, VerifyResult::Match},
    {"{SHA512}tmzExE8afwb9t77rz082jAYNOahkd+1wWoAW2CxkFBKhgdkcOSQLfRDC76pR4CheZS7OxGRcr2FWWYgYAKcyxw==", "S3cret pass", VerifyResult::Mismatch},
    {"{SHA512}ANVUrrQNZqUubAp3wPfEVHVyXHWW5XaC6D+FhCKJgeg=", Password, VerifyResult::Malformed},
    // SSHA, SSHA256, SSHA512: base64(digest(password + salt) + salt)
    {"{SSHA}mrQU99dKDc/BKL1bjZOJ3sb0Oy6hssPU5fYHGA==", Password, VerifyResult::Match},
    {"{SSHA}mrQU99dKDc/BKL1bjZOJ3sb0Oy6hssPU5fYHGA==", "S3cret pass.", VerifyResult::Mismatch},
    {"{SSHA}XhZYJz5Dlk7il2KCUZ2/EK9gM00=", Password, VerifyResult::Malformed},
    {"{SSHA256}wbwuy3oVbXmXnaAe+C1+22oSXynBI5CKJ7dnhbzzKaehssPU5fYHGA==", Password, VerifyResult::Match},
    {"{SSHA256}wbwuy3oVbXmXnaAe+C1+22oSXynBI5CKJ7dnhbzzKaehssPU5fYHGA==", "", VerifyResult::Mismatch},
    {"{SSHA512}gcskstpwr/VAbxHZOsUZrHeS78xnpTe4/fLGqfBjISx8YSZoJMMWXwxenpHjOW5M1BTEtXSj4BH4MC+QusmSwqGyw9Tl9gcY", Password, VerifyResult::Match},
    {"{SSHA512}gcskstpwr/VAbxHZOsUZrHeS78xnpTe4/fLGqfBjISx8YSZoJMMWXwxenpHjOW5M1BTEtXSj4BH4MC+QusmSwqGyw9Tl9gcY", "S3cret  pass!", VerifyResult::Mismatch},
    {"{SSHA512}gcskstpwr/VAbxHZOsUZrHeS78xnpTe4/fLGqfBjISx8YSZo", Password, VerifyResult::Malformed},
    // PLAIN, CLEARTEXT
    {"{PLAIN}S3cret pass!", Password, VerifyResult::Match},
    {"{CLEARTEXT}S3cret pass!", Password, VerifyResult::Match},
    {"{PLAIN}S3cret pass!", "S3cret pass", VerifyResult::Mismatch},
    {"{PLAIN}", "", VerifyResult::Match},
    {"{PLAIN.B64}UzNjcmV0IHBhc3Mh", Password, VerifyResult::Match},
    {"{PLAIN.HEX}533363726574207061737321", Password, VerifyResult::Match},
    // No {SCHEME}: CRYPT, as Dovecot's passwd-file reads it. A shadow(5) locked entry is an
    // ordinary failed login (not a permanent temporary failure).
    {"!", Password, VerifyResult::Mismatch},
    {"*", Password, VerifyResult::Mismatch},
    {"!$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1", Password,
     VerifyResult::Mismatch},
    // Not a hash at all, or a scheme we do not know: configuration errors, never "wrong password"
    {"", Password, VerifyResult::Malformed},
    {"S3cret pass!", Password, VerifyResult::Malformed},
    {"{SHA512-CRYPT", Password, VerifyResult::Malformed},
    {"{}abc", Password, VerifyResult::Malformed},
    {"{MD4}abc", Password, VerifyResult::Unsupported},
    {"{SCRAM-SHA-256}4096,abc", Password, VerifyResult::Unsupported},
    {"{SHA512-CRYPT.HEX}$6$saltsalt$x", Password, VerifyResult::Unsupported},
    {"{SHA.ROT13}abc", Password, VerifyResult::Unsupported},
};

}  // namespace

// For Boost.Test's log of the data rows (ADL needs it in the enum's namespace).
std::ostream& operator<<(std::ostream& out, HashScheme scheme) { return out << schemeName(scheme); }

BOOST_AUTO_TEST_SUITE(PasswordSchemeTest)

// A traditional DES crypt without {SCHEME} (Dovecot reads it as CRYPT), where libxcrypt has
// DES (Debian's does); else it must be Unsupported (a temporary failure), never a mismatch.
BOOST_AUTO_TEST_CASE(unprefixedDesCryptIsCrypt) {
    const bool hasDes = crypt_checksalt("ab") == CRYPT_SALT_OK || crypt_checksalt("ab") == CRYPT_SALT_METHOD_LEGACY;
    if (!hasDes) {
        BOOST_TEST((verifyPassword(Password, "abPAmMzNR85PQ") == VerifyResult::Unsupported));
        return;
    }
    BOOST_TEST((verifyPassword(Password, "abPAmMzNR85PQ") == VerifyResult::Match));  // crypt(3), salt "ab"
    BOOST_TEST((verifyPassword("wrong pw", "abPAmMzNR85PQ") == VerifyResult::Mismatch));  // DES reads 8 characters
}

BOOST_DATA_TEST_CASE(verifiesEveryScheme, boost::unit_test::data::make(Rows), row) {
    BOOST_TEST(name(verifyPassword(row.password, row.stored)) == name(row.expected));
}

BOOST_DATA_TEST_CASE(newHashesVerify,
                     boost::unit_test::data::make({HashScheme::Argon2id, HashScheme::Bcrypt,
                                                   HashScheme::Sha512Crypt}),
                     scheme) {
    const std::string hash = makePasswordHash(scheme, "correct horse");
    BOOST_TEST(hash.rfind("{" + std::string(schemeName(scheme)) + "}", 0) == 0u);
    BOOST_TEST(name(verifyPassword("correct horse", hash)) == name(VerifyResult::Match));
    BOOST_TEST(name(verifyPassword("correct horse ", hash)) == name(VerifyResult::Mismatch));
    // A fresh salt each time.
    BOOST_TEST(makePasswordHash(scheme, "correct horse") != hash);
}

BOOST_AUTO_TEST_CASE(newHashesHaveTheDocumentedForm) {
    BOOST_TEST(makePasswordHash(HashScheme::Argon2id, "x").rfind("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$", 0) == 0u);
    BOOST_TEST(makePasswordHash(HashScheme::Bcrypt, "x").rfind("{BLF-CRYPT}$2y$10$", 0) == 0u);
    BOOST_TEST(makePasswordHash(HashScheme::Sha512Crypt, "x").rfind("{SHA512-CRYPT}$6$", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(parsesSchemeNamesCaseInsensitively) {
    BOOST_TEST((parseHashScheme("argon2id") == HashScheme::Argon2id));
    BOOST_TEST((parseHashScheme("BCRYPT") == HashScheme::Bcrypt));
    BOOST_TEST((parseHashScheme("blf-crypt") == HashScheme::Bcrypt));
    BOOST_TEST((parseHashScheme("Sha512-Crypt") == HashScheme::Sha512Crypt));
    BOOST_TEST(!parseHashScheme("MD5-CRYPT").has_value());
    BOOST_TEST(!parseHashScheme("").has_value());
}

BOOST_AUTO_TEST_CASE(dummyHashIsStableAndMatchesNoGuess) {
    const std::string& h = dummyHash();
    BOOST_TEST(&h == &dummyHash());
    BOOST_TEST(h.rfind("{ARGON2ID}$argon2id$", 0) == 0u);
    BOOST_TEST(name(verifyPassword("", h)) == name(VerifyResult::Mismatch));
    BOOST_TEST(name(verifyPassword("password", h)) == name(VerifyResult::Mismatch));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
