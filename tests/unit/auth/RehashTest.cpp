// Rehash on login: the scheme of each old stored hash, the decision (failed logins and
// application passwords never rehash), and the whole path through AuthFacade + Rehasher over
// the real passwd-file plugin (the file gets an ARGON2ID hash, the next login still works) and
// over fake backends (a write that fails keeps the old hash and the login succeeds; a password
// changed meanwhile is never overwritten).
#include "auth/AuthFacade.h"
#include "auth/PluginLoader.h"
#include "auth/RehashPolicy.h"
#include "auth/Rehasher.h"

#include "unit/auth/AuthTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace postern::auth {
namespace {

namespace api = plugins::api;
using namespace std::chrono_literals;

const std::string Password = "S3cret pass!";
// The same password in every old scheme (vectors of PasswordSchemeTest.cpp).
const std::string Md5Crypt = "{MD5-CRYPT}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.";
const std::string Ssha = "{SSHA}mrQU99dKDc/BKL1bjZOJ3sb0Oy6hssPU5fYHGA==";
const std::string Sha512Crypt =
    "{SHA512-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1";
const std::string Argon2id =
    "{ARGON2ID}$argon2id$v=19$m=4096,t=2,p=1$c29tZXNhbHRzYWx0$RqiIq8tI8KnJAIxCImhWKl5iQvfURRg3z7EDQMqyz9U";

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The hash field of one user's line.
std::string hashOf(const std::string& passwd, const std::string& user) {
    std::istringstream in(passwd);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(user + ":", 0) == 0) {
            auto rest = line.substr(user.size() + 1);
            return rest.substr(0, rest.find(':'));
        }
    }
    return "";
}

core::AuthRequest request(const std::string& user, const std::string& password, const std::string& service = "smtp") {
    core::AuthRequest r;
    r.user = user;
    r.password = password;
    r.service = service;
    r.client.ip = Poco::Net::IPAddress("192.0.2.7");
    r.sessionId = "5e55";
    return r;
}

bool ok(const core::AuthResult& r) { return r.status == core::AuthStatus::Ok; }

RehashSettings settings(HashScheme target = HashScheme::Argon2id) { return {target, 100}; }

// A backend with one user and a hash the host verifies; setPassword stores (or fails with
// a chosen status); counts calls. Thread-safe.
class MemoryBackend : public api::Backend {
public:
    explicit MemoryBackend(std::string hash) : hash_(std::move(hash)) {}
    api::AuthAnswer authenticate(const std::string& user, const std::string&, const std::string&,
                                 const std::string&) noexcept override {
        std::lock_guard lock(mutex_);
        api::AuthAnswer a;
        if (user != "mem@example.test") {
            a.status = api::Status::UnknownUser;
            return a;
        }
        a.status = api::Status::Ok;
        a.record.user = user;
        a.record.passwordHash = hash_;
        if (appPassword) a.appPasswordId = "apppwid1";
        if (++authentications == changeAfterAuthentication) hash_ = changeTo;
        return a;
    }
    api::LookupAnswer lookup(const std::string&) noexcept override { return {}; }
    api::Status hasDomain(const std::string&) noexcept override { return api::Status::NotFound; }
    api::ProbeAnswer probe() noexcept override { return {api::Status::Ok, ""}; }
    api::WriteAnswer setPassword(const std::string&, const std::string& newHash) noexcept override {
        std::lock_guard lock(mutex_);
        ++writes;
        if (failWith != api::WriteStatus::Ok) {
            return {failWith, "cannot create a temporary file next to /etc/postern/users.passwd: Permission denied"};
        }
        hash_ = newHash;
        return {api::WriteStatus::Ok, ""};
    }
    // Only with compareAndSet (else the default: Unsupported, as a plugin without it).
    api::WriteAnswer replacePassword(const std::string& user, const std::string& oldHash,
                                     const std::string& newHash) noexcept override {
        if (!compareAndSet) return api::Backend::replacePassword(user, oldHash, newHash);
        std::lock_guard lock(mutex_);
        ++replaces;
        if (hash_ != oldHash) return {api::WriteStatus::Changed, "changed"};
        hash_ = newHash;
        return {api::WriteStatus::Ok, ""};
    }
    std::string hash() {
        std::lock_guard lock(mutex_);
        return hash_;
    }
    void setHash(std::string h) {
        std::lock_guard lock(mutex_);
        hash_ = std::move(h);
    }
    int writes = 0;
    int replaces = 0;
    int authentications = 0;
    bool compareAndSet = false;
    // The stored hash changes right after this authentication (1 = the rehash's first check):
    // a password changed while the rehash makes its new hash.
    int changeAfterAuthentication = 0;
    std::string changeTo;
    bool appPassword = false;
    api::WriteStatus failWith = api::WriteStatus::Ok;

private:
    std::mutex mutex_;
    std::string hash_;
};

int countContaining(const std::vector<std::string>& lines, const std::string& what) {
    int n = 0;
    for (const auto& l : lines) {
        n += l.find(what) != std::string::npos ? 1 : 0;
    }
    return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(RehashTest)

// --- scheme detection -----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(everyOldSchemeIsNamedOneWay) {
    const std::vector<std::pair<std::string, std::string>> rows = {
        {Md5Crypt, "MD5-CRYPT"},
        {"{MD5}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", "MD5-CRYPT"},
        {"{CRYPT}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", "MD5-CRYPT"},
        {"$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", "MD5-CRYPT"},
        {"{md5-crypt}$1$saltsalt$/jEMdjKFqdJovFMjhWtfj.", "MD5-CRYPT"},
        {"{MD5}5e1658273e43964ee2976282519dbf10", "PLAIN-MD5"},
        {"{PLAIN-MD5}5e1658273e43964ee2976282519dbf10", "PLAIN-MD5"},
        {"{LDAP-MD5}Xl5YJz5Dlk7il2KCUZ2/EA==", "LDAP-MD5"},
        {"{SMD5}abcd", "SMD5"},
        {"{SHA}XhZYJz5Dlk7il2KCUZ2/EK9gM00=", "SHA"},
        {"{SHA1}XhZYJz5Dlk7il2KCUZ2/EK9gM00=", "SHA"},
        {"{SHA.HEX}5e1658273e43964ee2976282519dbf10af60334d", "SHA"},
        {"{SHA256}ANVUrrQNZqUubAp3wPfEVHVyXHWW5XaC6D+FhCKJgeg=", "SHA256"},
        {"{sha256.hex}00d5", "SHA256"},
        {"{SHA512.B64}tmzE", "SHA512"},
        {Ssha, "SSHA"},
        {"{SSHA256}wbwu", "SSHA256"},
        {"{SSHA512}gcsk", "SSHA512"},
        {"{PLAIN}S3cret pass!", "PLAIN"},
        {"{CLEARTEXT}S3cret pass!", "PLAIN"},
        {"{PLAIN.B64}UzNjcmV0IHBhc3Mh", "PLAIN"},
        {Sha512Crypt, "SHA512-CRYPT"},
        {"$6$saltsalt$e4q5", "SHA512-CRYPT"},
        {"{SHA256-CRYPT}$5$saltsalt$m7Oa", "SHA256-CRYPT"},
        {"{BLF-CRYPT}$2y$05$PKnc", "BLF-CRYPT"},
        {"{BCRYPT}$2a$05$PKnc", "BLF-CRYPT"},
        {"$2b$05$PKnc", "BLF-CRYPT"},
        {"{CRYPT}$y$j9T$rX/s3RmQ", "YESCRYPT"},
        {"{CRYPT}abPAmMzNR85PQ", "CRYPT"},
        {"abPAmMzNR85PQ", "CRYPT"},  // unprefixed DES, read as CRYPT as in Dovecot
        {Argon2id, "ARGON2ID"},
        {"$argon2id$v=19$m=4096,t=2,p=1$c29t$Rqi", "ARGON2ID"},
        {"{Argon2id}$argon2id$v=19$m=4096", "ARGON2ID"},
        {"{ARGON2I}$argon2i$v=19$m=4096", "ARGON2I"},
        {"", ""},
        {"no scheme at all", ""},
        {"{}", ""},
        {"{PLAIN", ""},
    };
    for (const auto& [stored, scheme] : rows) {
        BOOST_TEST_CONTEXT(stored) { BOOST_TEST(storedSchemeOf(stored) == scheme); }
    }
    BOOST_TEST(canonicalSchemeName("bcrypt") == "BLF-CRYPT");
    BOOST_TEST(canonicalSchemeName("ssha512") == "SSHA512");
    BOOST_TEST(canonicalSchemeName("") == "");
}

// --- the decision -----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(aSuccessfulLoginWithAnOldSchemeIsRehashed) {
    for (const std::string& stored : {Md5Crypt, Ssha, std::string("{PLAIN}S3cret pass!"), Sha512Crypt}) {
        api::AuthAnswer a;
        a.status = api::Status::Ok;
        a.record.passwordHash = stored;
        BOOST_TEST_CONTEXT(stored) {
            auto from = rehashFrom({true, &a}, HashScheme::Argon2id);
            BOOST_REQUIRE(from.has_value());
            BOOST_TEST(*from == storedSchemeOf(stored));
        }
    }
}

BOOST_AUTO_TEST_CASE(theTargetSchemeIsNotRehashed) {
    api::AuthAnswer a;
    a.status = api::Status::Ok;
    a.record.passwordHash = Argon2id;
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Argon2id).has_value());
    a.record.passwordHash = "{BCRYPT}$2a$05$PKnc";
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Bcrypt).has_value());  // BCRYPT = BLF-CRYPT
    BOOST_TEST(rehashFrom({true, &a}, HashScheme::Argon2id).value_or("") == "BLF-CRYPT");
    a.record.passwordHash = Sha512Crypt;
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Sha512Crypt).has_value());
    BOOST_TEST(rehashFrom({true, &a}, HashScheme::Argon2id).value_or("") == "SHA512-CRYPT");
}

// DES crypt reads 8 octets of the password, bcrypt 72: a password that long or longer that
// matched may not be the owner's (every password with that prefix matches, the prefix
// itself too), so it is never made the new hash. A shorter one, read whole, still is.
BOOST_AUTO_TEST_CASE(aTruncatingSchemeIsRehashedOnlyFromAPasswordItReadWhole) {
    api::AuthAnswer a;
    a.status = api::Status::Ok;
    a.record.passwordHash = "{CRYPT}abJhAb938FFjw";
    BOOST_TEST(rehashFrom({true, &a, 7}, HashScheme::Argon2id).value_or("") == "CRYPT");
    BOOST_TEST(!rehashFrom({true, &a, 8}, HashScheme::Argon2id).has_value());  // maybe a prefix itself
    BOOST_TEST(!rehashFrom({true, &a, 9}, HashScheme::Argon2id).has_value());
    a.record.passwordHash = "{BLF-CRYPT}$2y$05$PKnc";
    BOOST_TEST(rehashFrom({true, &a, 71}, HashScheme::Argon2id).value_or("") == "BLF-CRYPT");
    BOOST_TEST(!rehashFrom({true, &a, 72}, HashScheme::Argon2id).has_value());
    a.record.passwordHash = Md5Crypt;  // reads every octet
    BOOST_TEST(rehashFrom({true, &a, 200}, HashScheme::Argon2id).value_or("") == "MD5-CRYPT");
}

BOOST_AUTO_TEST_CASE(aFailedLoginNeverRehashes) {
    api::AuthAnswer a;
    a.status = api::Status::Ok;
    a.record.passwordHash = Md5Crypt;
    BOOST_TEST(!rehashFrom({false, &a}, HashScheme::Argon2id).has_value());  // the password did not match
    for (auto status : {api::Status::BadCredentials, api::Status::Disabled, api::Status::UnknownUser,
                        api::Status::TempFail}) {
        a.status = status;
        BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Argon2id).has_value());
    }
    BOOST_TEST(!rehashFrom({true, nullptr}, HashScheme::Argon2id).has_value());
}

BOOST_AUTO_TEST_CASE(anAppPasswordLoginNeverRehashes) {
    api::AuthAnswer a;
    a.status = api::Status::Ok;
    a.record.passwordHash = Md5Crypt;
    a.appPasswordId = "apppwid1";
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Argon2id).has_value());
}

BOOST_AUTO_TEST_CASE(aVerifyingBackendRehashesOnlyIfItNamesTheScheme) {
    api::AuthAnswer a;
    a.status = api::Status::Ok;
    a.verified = true;  // an LDAP bind: no hash seen by the host
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Argon2id).has_value());
    a.storedScheme = "ssha";
    BOOST_TEST(rehashFrom({true, &a}, HashScheme::Argon2id).value_or("") == "SSHA");
    a.storedScheme = "argon2id";
    BOOST_TEST(!rehashFrom({true, &a}, HashScheme::Argon2id).has_value());
}

// --- through the facade, over the real passwd-file plugin --------------------------------

struct PasswdFixture {
    PasswdFixture() {
        test::writeFile(tmp.file("passwd"),
                        "# users\n"
                        "md5@example.test:" + Md5Crypt + "::::::mailbox=example.test/m\n"
                        "ssha@example.test:" + Ssha + "\n"
                        "plain@example.test:{PLAIN}S3cret pass!\n"
                        "new@example.test:" + Argon2id + "\n");
        handle = loader.load("passwd-file", "local", {{"path", tmp.file("passwd")}, {"check_interval", "3600s"}});
    }
    std::string passwd() const { return readFile(tmp.file("passwd")); }

    test::TempDir tmp;
    PluginLoader loader{test::pluginDir()};
    BackendHandle handle;
    Poco::AutoPtr<test::CaptureChannel> log = test::captureLog("postern.auth");
};

BOOST_FIXTURE_TEST_CASE(passwdFileUsersGetAnArgon2idHashAndStillLogIn, PasswdFixture) {
    Rehasher rehasher(settings());
    AuthFacade facade({{"local", handle.get(), {"*"}, true}});
    facade.setRehasher(&rehasher);
    for (const std::string user : {"md5@example.test", "ssha@example.test", "plain@example.test"}) {
        BOOST_TEST_CONTEXT(user) {
            const std::string before = hashOf(passwd(), user);
            BOOST_TEST(ok(facade.authenticate(request(user, Password))));
            BOOST_REQUIRE(rehasher.waitIdle(30s));
            const std::string after = hashOf(passwd(), user);
            BOOST_TEST(after.rfind("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$", 0) == 0u, after);
            BOOST_TEST((verifyPassword(Password, after) == VerifyResult::Match));
            BOOST_TEST(countContaining(log->lines(), "event=auth.rehash user=" + user + " backend=local from=" +
                                                         storedSchemeOf(before) + " to=ARGON2ID") == 1);
            // The next login reads the new hash at once (check_interval is an hour here) and works;
            // it does not rehash again.
            BOOST_TEST(ok(facade.authenticate(request(user, Password))));
            BOOST_REQUIRE(rehasher.waitIdle(30s));
            BOOST_TEST(hashOf(passwd(), user) == after);
            BOOST_TEST(!ok(facade.authenticate(request(user, "S3cret pass?"))));
        }
    }
    // Lines, comments and the other fields are kept; the target scheme was not touched.
    BOOST_TEST(passwd().rfind("# users\nmd5@example.test:{ARGON2ID}", 0) == 0u);
    BOOST_TEST(passwd().find("::::::mailbox=example.test/m\n") != std::string::npos);
    BOOST_TEST(hashOf(passwd(), "new@example.test") == Argon2id);
    BOOST_TEST(ok(facade.authenticate(request("new@example.test", Password))));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(hashOf(passwd(), "new@example.test") == Argon2id);
}

BOOST_FIXTURE_TEST_CASE(aWrongPasswordLeavesTheFileAlone, PasswdFixture) {
    Rehasher rehasher(settings());
    AuthFacade facade({{"local", handle.get(), {"*"}, true}});
    facade.setRehasher(&rehasher);
    const std::string before = passwd();
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(!ok(facade.authenticate(request("md5@example.test", "S3cret pass?"))));
        BOOST_TEST(!ok(facade.authenticate(request("plain@example.test", ""))));
    }
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(passwd() == before);
    BOOST_TEST(countContaining(log->lines(), "auth.rehash") == 0);
}

BOOST_FIXTURE_TEST_CASE(aBackendWithRehashOffIsLeftAlone, PasswdFixture) {
    Rehasher rehasher(settings());
    AuthFacade facade({{"local", handle.get(), {"*"}, false}});
    facade.setRehasher(&rehasher);
    const std::string before = passwd();
    BOOST_TEST(ok(facade.authenticate(request("md5@example.test", Password))));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(passwd() == before);
}

BOOST_FIXTURE_TEST_CASE(concurrentLoginsWriteAValidFileOnce, PasswdFixture) {
    Rehasher rehasher(settings());
    AuthFacade facade({{"local", handle.get(), {"*"}, true}});
    facade.setRehasher(&rehasher);
    std::vector<std::thread> threads;
    std::atomic<int> oks{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            const std::string user = t % 2 ? "md5@example.test" : "ssha@example.test";
            for (int i = 0; i < 5; ++i) {
                oks += ok(facade.authenticate(request(user, Password))) ? 1 : 0;
            }
        });
    }
    for (auto& th : threads) th.join();
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(oks.load() == 40);
    const std::string text = passwd();
    BOOST_TEST((verifyPassword(Password, hashOf(text, "md5@example.test")) == VerifyResult::Match));
    BOOST_TEST((verifyPassword(Password, hashOf(text, "ssha@example.test")) == VerifyResult::Match));
    BOOST_TEST(storedSchemeOf(hashOf(text, "md5@example.test")) == "ARGON2ID");
    BOOST_TEST(storedSchemeOf(hashOf(text, "ssha@example.test")) == "ARGON2ID");
    BOOST_TEST(hashOf(text, "plain@example.test") == "{PLAIN}S3cret pass!");
    // One write per user: later jobs found the new hash already (or were not queued twice).
    BOOST_TEST(countContaining(log->lines(), "event=auth.rehash user=md5@example.test") == 1);
    BOOST_TEST(countContaining(log->lines(), "event=auth.rehash user=ssha@example.test") == 1);
}

// --- fake backends: failures, app passwords, changed passwords ----------------------------

BOOST_AUTO_TEST_CASE(aFailedWriteKeepsTheOldHashTheLoginSucceedsOneWarning) {
    auto log = test::captureLog("postern.auth");
    MemoryBackend mem(Md5Crypt);
    mem.failWith = api::WriteStatus::IoError;
    Rehasher rehasher(settings());
    AuthFacade facade({{"mem", &mem, {"*"}, true}});
    facade.setRehasher(&rehasher);
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
        BOOST_REQUIRE(rehasher.waitIdle(30s));
    }
    BOOST_TEST(mem.hash() == Md5Crypt);
    BOOST_TEST(mem.writes == 3);
    // One warning naming the file and what happens; the repeats only at debug level.
    BOOST_TEST(countContaining(log->lines(), "event=auth.rehash_failed user=mem@example.test backend=mem "
                                             "from=MD5-CRYPT to=ARGON2ID status=io_error detail=\"cannot create a "
                                             "temporary file next to /etc/postern/users.passwd: Permission denied; "
                                             "the old hash stays (the login succeeded)\"") == 3);
    // A success clears the memory of the warning.
    mem.failWith = api::WriteStatus::Ok;
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(storedSchemeOf(mem.hash()) == "ARGON2ID");
}

BOOST_AUTO_TEST_CASE(theWarningIsLoggedOncePerBackendAndKind) {
    // Levels are checked with a channel that keeps them.
    struct LevelChannel : Poco::Channel {
        void log(const Poco::Message& m) override {
            std::lock_guard lock(mutex);
            if (m.getText().find("auth.rehash_failed") != std::string::npos) {
                (m.getPriority() == Poco::Message::PRIO_WARNING ? warnings : debugs)++;
            }
        }
        std::mutex mutex;
        int warnings = 0;
        int debugs = 0;
    };
    Poco::AutoPtr<LevelChannel> channel(new LevelChannel);
    Poco::Logger::get("postern.auth").setChannel(channel);
    Poco::Logger::get("postern.auth").setLevel(Poco::Message::PRIO_DEBUG);
    MemoryBackend mem(Md5Crypt);
    mem.failWith = api::WriteStatus::IoError;
    Rehasher rehasher(settings());
    AuthFacade facade({{"mem", &mem, {"*"}, true}});
    facade.setRehasher(&rehasher);
    for (int i = 0; i < 4; ++i) {
        BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
        BOOST_REQUIRE(rehasher.waitIdle(30s));
    }
    BOOST_TEST(channel->warnings == 1);
    BOOST_TEST(channel->debugs == 3);
}

BOOST_AUTO_TEST_CASE(anAppPasswordLoginIsNotRehashed) {
    auto log = test::captureLog("postern.auth");
    MemoryBackend mem(Md5Crypt);
    mem.appPassword = true;
    Rehasher rehasher(settings());
    AuthFacade facade({{"mem", &mem, {"*"}, true}});
    facade.setRehasher(&rehasher);
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(mem.writes == 0);
    BOOST_TEST(mem.hash() == Md5Crypt);
}

BOOST_AUTO_TEST_CASE(aPasswordChangedBeforeTheWriteIsNotOverwritten) {
    auto log = test::captureLog("postern.auth");
    MemoryBackend mem(Md5Crypt);
    Rehasher rehasher(settings());
    // As if `posternctl user passwd` ran between the login and the rehash.
    mem.setHash("{PLAIN}new password");
    rehasher.submit({"mem", &mem, "mem@example.test", Password, Md5Crypt, "MD5-CRYPT", false});
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(mem.writes == 0);
    BOOST_TEST(mem.hash() == "{PLAIN}new password");
    BOOST_TEST(countContaining(log->lines(), "event=auth.rehash_skipped user=mem@example.test backend=mem "
                                             "reason=hash_changed") == 1);
}

// The rehash used to check the stored hash, then make the new one (an Argon2id hash takes
// tens of milliseconds), then write it: a password changed in between was overwritten with
// a hash of the old password. Now the write is a compare-and-set, or, for a backend without
// one, preceded by a second check.
BOOST_AUTO_TEST_CASE(aPasswordChangedWhileTheNewHashIsMadeIsNotOverwritten) {
    for (const bool cas : {true, false}) {
        BOOST_TEST_CONTEXT("compare-and-set " << cas) {
            auto log = test::captureLog("postern.auth");
            MemoryBackend mem(Md5Crypt);
            mem.compareAndSet = cas;
            mem.changeAfterAuthentication = 1;
            mem.changeTo = "{PLAIN}new password";
            Rehasher rehasher(settings());
            rehasher.submit({"mem", &mem, "mem@example.test", Password, Md5Crypt, "MD5-CRYPT", false});
            BOOST_REQUIRE(rehasher.waitIdle(30s));
            BOOST_TEST(mem.hash() == "{PLAIN}new password");
            BOOST_TEST(mem.writes == 0);
            BOOST_TEST(mem.replaces == (cas ? 1 : 0));
            BOOST_TEST(mem.authentications == (cas ? 1 : 2));
            BOOST_TEST(countContaining(log->lines(), "event=auth.rehash_skipped user=mem@example.test backend=mem "
                                                     "reason=hash_changed") == 1);
            BOOST_TEST(countContaining(log->lines(), "event=auth.rehash ") == 0);
        }
    }
}

BOOST_AUTO_TEST_CASE(aCompareAndSetBackendIsRehashedInOneWrite) {
    MemoryBackend mem(Md5Crypt);
    mem.compareAndSet = true;
    Rehasher rehasher(settings());
    rehasher.submit({"mem", &mem, "mem@example.test", Password, Md5Crypt, "MD5-CRYPT", false});
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(storedSchemeOf(mem.hash()) == "ARGON2ID");
    BOOST_TEST((verifyPassword(Password, mem.hash()) == VerifyResult::Match));
    BOOST_TEST(mem.replaces == 1);
    BOOST_TEST(mem.writes == 0);
    BOOST_TEST(mem.authentications == 1);
}

BOOST_AUTO_TEST_CASE(aCacheHitDoesNotRehashAndTheCacheStaysRight) {
    auto log = test::captureLog("postern.auth");
    MemoryBackend mem(Md5Crypt);
    mem.failWith = api::WriteStatus::TempFail;  // first: the store cannot take it
    Rehasher rehasher(settings());
    AuthCache cache({100, 300s, 60s});
    AuthFacade facade({{"mem", &mem, {"*"}, true}});
    facade.setCache(&cache);
    facade.setRehasher(&rehasher);
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));  // from the cache
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(mem.writes == 1);
    // After a rehash the cached answers (keyed by the password, not the hash) stay right.
    mem.failWith = api::WriteStatus::Ok;
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password, "pop3"))) == true);
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(storedSchemeOf(mem.hash()) == "ARGON2ID");
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password))));
    BOOST_TEST(!ok(facade.authenticate(request("mem@example.test", "S3cret pass?"))));
    BOOST_TEST(ok(facade.authenticate(request("mem@example.test", Password, "pop3"))));
}

BOOST_AUTO_TEST_CASE(aFullQueueDropsTheJobAndWipesNothingElse) {
    MemoryBackend mem(Md5Crypt);
    Rehasher rehasher({HashScheme::Argon2id, 0});  // no room at all
    BOOST_TEST(!rehasher.submit({"mem", &mem, "mem@example.test", Password, Md5Crypt, "MD5-CRYPT", false}));
    BOOST_REQUIRE(rehasher.waitIdle(30s));
    BOOST_TEST(mem.writes == 0);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
