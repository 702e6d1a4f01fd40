// Tests for AuthFacade over the real passwd-file plugin (temp files) and fake backends:
// login outcomes, the one log line, three-way answers, alias expansion, loops and forwards.
#include "auth/AuthFacade.h"

#include "unit/auth/AuthTestSupport.h"
#include "auth/AuthCache.h"
#include "auth/PluginLoader.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <memory>
#include <thread>

namespace postern::auth {
namespace {

using core::Answer;
using core::AuthStatus;
namespace api = plugins::api;

const std::string BobHash =  // openssl passwd -6 -salt saltsalt 'S3cret pass!'
    "{SHA512-CRYPT}$6$saltsalt$e4q5XyxWasPm1crbD4ussuC5VJMqWPurrlVV8ozR0WNqtOMgWFyq9QKIv6N86cWB62W2plZ3Rh1UQ9lhRUW4B1";

std::string name(AuthStatus s) {
    switch (s) {
    case AuthStatus::Ok: return "Ok";
    case AuthStatus::BadCredentials: return "BadCredentials";
    case AuthStatus::TempFail: return "TempFail";
    case AuthStatus::Blocked: return "Blocked";
    }
    return "?";
}

std::string name(Answer a) {
    switch (a) {
    case Answer::Yes: return "Yes";
    case Answer::No: return "No";
    case Answer::TempFail: return "TempFail";
    }
    return "?";
}

using Strings = std::vector<std::string>;

// The real plugin over a passwd-file and an aliases file in a temp dir.
struct Fixture {
    Fixture() {
        test::writeFile(tmp.file("passwd"),
                        "alice@example.test:{PLAIN}alicepw::::::mailbox=example.test/a/alice "
                        "senders=Alias@Example.test,bob@other.test\n"
                        "Bob@Example.test:" + BobHash + ":1000:1000::/home/bob:/bin/false\n"
                        "carol@example.test:{PLAIN}carolpw::::::disabled=yes\n"
                        "dave@example.test:{PLAIN}davepw::::::nologin=y\n"
                        "eve@example.test:{MD4}0123\n"
                        "frank@example.test:{PLAIN}frankpw\n"
                        "anna@xn--mller-kva.example:{PLAIN}annapw\n"
                        "otto@b\xc3\xbc" "cher.example:{PLAIN}ottopw\n");
        std::string aliases =
            "postmaster@example.test: alice@example.test\n"
            "team@example.test: alice, Bob@Example.test, friend@remote.test, alice@example.test\n"
            "loop1@example.test: loop2@example.test\n"
            "loop2@example.test: loop1@example.test\n"
            "frank@example.test: frank@example.test, frank@remote.test\n"
            "ghost@example.test: nobody@example.test\n"
            "gone@example.test: carol@example.test\n"
            "half@example.test: nobody@example.test, bob@example.test\n";
        for (int i = 0; i < 10; ++i) {
            aliases += "deep" + std::to_string(i) + "@example.test: deep" + std::to_string(i + 1) + "@example.test\n";
        }
        aliases += "deep10@example.test: alice@example.test\n";
        test::writeFile(tmp.file("aliases"), aliases);
        handle = loader.load("passwd-file", "users",
                             {{"path", tmp.file("passwd")}, {"aliases", tmp.file("aliases")}});
    }

    core::AuthRequest request(const std::string& user, const std::string& password) const {
        core::AuthRequest r;
        r.user = user;
        r.password = password;
        r.service = "smtp";
        r.client.ip = Poco::Net::IPAddress("192.0.2.7");
        r.sessionId = "1f3a";
        return r;
    }

    BackendBinding users(Strings domains = {"*"}) { return {"users", handle.get(), std::move(domains)}; }

    test::TempDir tmp;
    PluginLoader loader{test::pluginDir()};
    BackendHandle handle;
    Poco::AutoPtr<test::CaptureChannel> log = test::captureLog("postern.auth");
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(AuthFacadeTest, Fixture)

BOOST_AUTO_TEST_CASE(acceptsTheRightPasswordAndFillsTheIdentity) {
    AuthFacade facade({users()});
    auto r = facade.authenticate(request("ALICE@Example.TEST", "alicepw"));
    BOOST_TEST(name(r.status) == "Ok");
    BOOST_TEST(r.identity.user == "alice@example.test");
    BOOST_TEST(r.identity.mailbox == "example.test/a/alice");
    BOOST_TEST(r.identity.senderAddresses == (Strings{"alice@example.test", "alias@example.test", "bob@other.test"}),
               boost::test_tools::per_element());

    auto bob = facade.authenticate(request("bob@example.test", "S3cret pass!"));
    BOOST_TEST(name(bob.status) == "Ok");
    BOOST_TEST(bob.identity.mailbox == "example.test/bob");
    BOOST_TEST(bob.identity.senderAddresses == Strings{"bob@example.test"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(logsOneLinePerAttemptWithoutThePassword) {
    AuthFacade facade({users()});
    log->clear();
    facade.authenticate(request("alice@example.test", "alicepw"));
    facade.authenticate(request("alice@example.test", "Wr0ngSecret"));
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 2u);
    BOOST_TEST(lines[0].rfind("s=1f3a event=auth.ok svc=smtp ip=192.0.2.7 user=alice@example.test "
                              "backend=users result=ok ms=", 0) == 0u, lines[0]);
    BOOST_TEST(lines[1].rfind("s=1f3a event=auth.fail svc=smtp ip=192.0.2.7 user=alice@example.test "
                              "backend=users result=bad_password ms=", 0) == 0u, lines[1]);
    for (const auto& l : lines) {
        BOOST_TEST(l.find("alicepw") == std::string::npos);
        BOOST_TEST(l.find("Wr0ngSecret") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(aClientCannotForgeLogFields) {
    AuthFacade facade({users()});
    log->clear();
    facade.authenticate(request("x result=ok\nevent=auth.ok", "p"));
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find('\n') == std::string::npos);
    BOOST_TEST(lines[0].find(" result=ok") == std::string::npos, lines[0]);
    BOOST_TEST(lines[0].find("result=unknown_user") != std::string::npos, lines[0]);
}

BOOST_AUTO_TEST_CASE(wrongPasswordUnknownUserAndDisabledAreAllBadCredentials) {
    AuthFacade facade({users()});
    struct Case {
        std::string user, password, logResult;
    };
    for (const auto& c : std::vector<Case>{
             {"alice@example.test", "alicepw ", "bad_password"},
             {"bob@example.test", "s3cret pass!", "bad_password"},
             {"nobody@example.test", "alicepw", "unknown_user"},
             {"nobody", "x", "unknown_user"},
             {"", "x", "unknown_user"},
             {"caf\xe9@example.test", "x", "unknown_user"},  // not UTF-8: no backend is asked
             {"carol@example.test", "carolpw", "disabled"},
             {"dave@example.test", "davepw", "disabled"},
         }) {
        log->clear();
        auto r = facade.authenticate(request(c.user, c.password));
        BOOST_TEST(name(r.status) == "BadCredentials", c.user);
        BOOST_TEST(r.identity.user.empty());
        auto lines = log->lines();
        BOOST_REQUIRE(lines.size() == 1u);
        BOOST_TEST(lines[0].find("result=" + c.logResult + " ") != std::string::npos, lines[0]);
    }
}

BOOST_AUTO_TEST_CASE(aLoginWithEitherSpellingOfAnIdnDomainIsTheSameAccount) {
    // Review finding: the login went to the backend as typed, so a user stored with the
    // A-label who typed the U-label (SASL PLAIN is UTF-8) got 535 for the right password.
    AuthFacade facade({users()});
    for (const char* login : {"anna@m\xc3\xbcller.example", "anna@xn--mller-kva.example", "Anna@M\xc3\xbcLLER.example"}) {
        auto r = facade.authenticate(request(login, "annapw"));
        BOOST_TEST(name(r.status) == "Ok", login);
        BOOST_TEST(r.identity.user == "anna@xn--mller-kva.example");
    }
    // And a backend that holds the U-label is asked with it when the A-label is unknown.
    for (const char* login : {"otto@xn--bcher-kva.example", "otto@b\xc3\xbc" "cher.example"}) {
        BOOST_TEST(name(facade.authenticate(request(login, "ottopw")).status) == "Ok", login);
    }
    BOOST_TEST(name(facade.authenticate(request("anna@m\xc3\xbcller.example", "wrong")).status) == "BadCredentials");
}

BOOST_AUTO_TEST_CASE(anUnreadableStoredHashIsTempFailNotAWrongPassword) {
    AuthFacade facade({users()});
    log->clear();
    auto r = facade.authenticate(request("eve@example.test", "anything"));
    BOOST_TEST(name(r.status) == "TempFail");
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find("result=tempfail") != std::string::npos, lines[0]);
    BOOST_TEST(lines[0].find("unsupported") != std::string::npos, lines[0]);
}

BOOST_AUTO_TEST_CASE(noFreeHashCheckIsTempFailAndTheBoundHolds) {
    // Review finding: nothing bounded the Argon2id checks at once (unknown users too: the
    // dummy hash), so a login flood could allocate gigabytes. With every slot taken, a login
    // waits auth.hash_wait_timeout and is a temporary failure, for a known or unknown user.
    HashGate gate(1, std::chrono::milliseconds(50));
    AuthFacade facade({users()});
    facade.setHashGate(&gate);
    {
        HashGate::Slot held(&gate);
        for (const char* user : {"alice@example.test", "nobody@example.test"}) {
            log->clear();
            auto r = facade.authenticate(request(user, "alicepw"));
            BOOST_TEST(name(r.status) == "TempFail", user);
            auto lines = log->lines();
            BOOST_REQUIRE(lines.size() == 1u);
            BOOST_TEST(lines[0].find("result=tempfail") != std::string::npos, lines[0]);
            BOOST_TEST(lines[0].find("auth.max_parallel_hashes") != std::string::npos, lines[0]);
        }
    }
    BOOST_TEST(gate.inUse() == 0u);
    BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "Ok");
    // Many sessions at once: never more checks than the bound (sampled while they run).
    HashGate two(2, std::chrono::seconds(30));
    facade.setHashGate(&two);
    std::atomic<bool> done{false};
    std::atomic<std::size_t> most{0};
    std::thread watch([&] {
        while (!done) {
            std::size_t n = two.inUse();
            if (n > most) most = n;
        }
    });
    std::vector<std::thread> logins;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i)
        logins.emplace_back([&, i] {
            if (name(facade.authenticate(request(i % 2 ? "bob@example.test" : "nobody@example.test", "S3cret pass!"))
                         .status) != "TempFail")
                ++ok;
        });
    for (auto& t : logins) t.join();
    done = true;
    watch.join();
    BOOST_TEST(ok == 8);
    BOOST_TEST(most <= 2u);
    BOOST_TEST(two.inUse() == 0u);
}

BOOST_AUTO_TEST_CASE(aBackendThatCannotAnswerMakesTheResultTempFail) {
    test::TempFailBackend down;
    {
        // First in the chain and authoritative: never fall through to "no" or to a later "yes".
        AuthFacade facade({{"ldap", &down, {"*"}}, users()});
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "TempFail");
        BOOST_TEST(name(facade.authenticate(request("nobody@example.test", "x")).status) == "TempFail");
        BOOST_TEST(name(facade.isLocalDomain("nowhere.test")) == "TempFail");
        BOOST_TEST(name(facade.isLocalDomain("example.test")) == "Yes");
        BOOST_TEST(name(facade.lookupRecipient("alice@example.test").answer) == "TempFail");
    }
    {
        // Later in the chain: a user found earlier is decided there; an unknown one is not "no".
        AuthFacade facade({users(), {"ldap", &down, {"*"}}});
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "Ok");
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "bad")).status) == "BadCredentials");
        BOOST_TEST(name(facade.authenticate(request("nobody@example.test", "x")).status) == "TempFail");
        BOOST_TEST(name(facade.lookupRecipient("nobody@example.test").answer) == "TempFail");
    }
    {
        // Not authoritative for the user's domain: never asked.
        down.calls = 0;
        AuthFacade facade({{"ldap", &down, {"Corp.test"}}, users()});
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "Ok");
        BOOST_TEST(name(facade.authenticate(request("nobody@example.test", "x")).status) == "BadCredentials");
        BOOST_TEST(name(facade.lookupRecipient("alice@example.test").answer) == "Yes");
        BOOST_TEST(down.calls == 0);
        BOOST_TEST(name(facade.authenticate(request("x@corp.test", "x")).status) == "TempFail");
        BOOST_TEST(down.calls == 1);
    }
}

// A backend that checks passwords itself (LDAP: a bind) costs a real login no local hash, so
// its unknown and disabled users get none either: the dummy hash took 25 ms more than a
// real login there, and needing a HashGate slot when none was free answered 454 for an
// unknown name and 535 for a real one (an existence oracle). Now both need no slot.
BOOST_AUTO_TEST_CASE(aVerifyingBackendsUnknownUsersCostNoLocalHash) {
    test::VerifyingBackend bind;
    BackendBinding ldap{"ldap", &bind, {"bind.test"}};
    ldap.verifiesPasswords = true;
    AuthFacade facade({ldap});
    HashGate gate(1, std::chrono::milliseconds(50));
    facade.setHashGate(&gate);
    HashGate::Slot held(&gate);  // no slot free
    for (const char* user : {"nobody@bind.test", "vera@bind.test"})
        BOOST_TEST(name(facade.authenticate(request(user, "wrong")).status) == "BadCredentials", user);
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    // Where a hash backend is asked too, an unknown user still pays the dummy check (here:
    // no slot, TempFail): its real users do.
    AuthFacade mixed({ldap, users()});
    mixed.setHashGate(&gate);
    BOOST_TEST(name(mixed.authenticate(request("nobody@bind.test", "wrong")).status) == "TempFail");
    // And then so does the directory's real user, whether the password is right or wrong
    // (review findings: 535 for vera, 454 for an unknown name, an existence oracle; then a
    // wrong password 454, which the penalty does not count, and the right one 235: unlimited
    // guessing while the slots were kept busy).
    BOOST_TEST(name(mixed.authenticate(request("vera@bind.test", "wrong")).status) == "TempFail");
    BOOST_TEST(name(mixed.authenticate(request("vera@bind.test", "bindpw")).status) == "TempFail");
}

// A success from the auth cache passes the hash gate too (no hash): with the gate saturated,
// the right password must not get 235 from memory while guesses get 454.
BOOST_AUTO_TEST_CASE(aCachedSuccessPassesTheHashGate) {
    AuthFacade facade({users()});
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)});
    facade.setCache(&cache);
    HashGate gate(1, std::chrono::milliseconds(50));
    facade.setHashGate(&gate);
    BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "Ok");
    const auto hits = cache.hits();
    {
        HashGate::Slot held(&gate);  // no slot free
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "TempFail");
        BOOST_TEST(name(facade.authenticate(request("alice@example.test", "guess")).status) == "TempFail");
    }
    BOOST_TEST(name(facade.authenticate(request("alice@example.test", "alicepw")).status) == "Ok");
    BOOST_TEST(cache.hits() > hits);
}

// With a slot free, the mixed chain answers the directory's user as before: its slot is
// taken once, for the bind and the failure's dummy check (a second one would wait for
// itself with auth.max_parallel_hashes = 1).
BOOST_AUTO_TEST_CASE(aMixedChainTakesOneSlotForADirectoryLogin) {
    test::VerifyingBackend bind;
    BackendBinding ldap{"ldap", &bind, {"bind.test"}};
    ldap.verifiesPasswords = true;
    AuthFacade mixed({ldap, users()});
    HashGate gate(1, std::chrono::milliseconds(50));
    mixed.setHashGate(&gate);
    BOOST_TEST(name(mixed.authenticate(request("vera@bind.test", "wrong")).status) == "BadCredentials");
    BOOST_TEST(name(mixed.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    BOOST_TEST(name(mixed.authenticate(request("nobody@bind.test", "x")).status) == "BadCredentials");
}

// The dummy hash is in auth.default_scheme: an unknown user costs what a real user whose
// hash is in that scheme costs.
BOOST_AUTO_TEST_CASE(theDummyHashIsInTheConfiguredScheme) {
    AuthFacade facade({users()});
    facade.setDummyScheme(HashScheme::Sha512Crypt);
    BOOST_TEST(name(facade.authenticate(request("nobody@example.test", "x")).status) == "BadCredentials");
    BOOST_TEST(makeDummyHash(HashScheme::Sha512Crypt).rfind("{SHA512-CRYPT}$6$", 0) == 0u);
    BOOST_TEST(makeDummyHash(HashScheme::Sha512Crypt) != makeDummyHash(HashScheme::Sha512Crypt));
}

BOOST_AUTO_TEST_CASE(aBackendThatVerifiesItselfDecides) {
    test::VerifyingBackend bind;
    AuthFacade facade({{"ldap", &bind, {"bind.test"}}, users()});
    auto ok = facade.authenticate(request("Vera@bind.test", "bindpw"));
    BOOST_TEST(name(ok.status) == "Ok");
    BOOST_TEST(ok.identity.user == "vera@bind.test");
    BOOST_TEST(ok.identity.senderAddresses == Strings{"vera@bind.test"}, boost::test_tools::per_element());
    BOOST_TEST(ok.identity.mailbox == "bind.test/vera");
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "nope")).status) == "BadCredentials");
    BOOST_TEST(name(facade.isLocalDomain("bind.test")) == "Yes");
}

BOOST_AUTO_TEST_CASE(cachesAWrongPasswordAndForgetsSuccessesOnAFreshFailure) {
    test::VerifyingBackend bind;
    AuthFacade facade({{"ldap", &bind, {"bind.test"}}});
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)});
    facade.setCache(&cache);
    // The same wrong password again is answered from memory (auth.cache.negative_ttl):
    // the negative entry was once stored under the generation its own failure then retired.
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "old")).status) == "BadCredentials");
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "old")).status) == "BadCredentials");
    BOOST_TEST(name(facade.authenticate(request("Vera@bind.test", "old")).status) == "BadCredentials");
    BOOST_TEST(bind.calls == 1);
    // A success is cached; a failure the backend gives afterwards (another password)
    // clears it, so the next login with the first password asks the backend again.
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    BOOST_TEST(bind.calls == 2);
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "other")).status) == "BadCredentials");
    BOOST_TEST(bind.calls == 3);
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    BOOST_TEST(bind.calls == 4);
    // A negative answer from memory carries no news: the success stays cached.
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "other")).status) == "BadCredentials");
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
    BOOST_TEST(bind.calls == 4);
}

// "postern."-prefixed names are what backends tell the host: a passwd-file line cannot set
// them (review finding: postern.replica_read=0 on a line switched off the negative cache for
// that user, so every guess cost a full hash check).
BOOST_AUTO_TEST_CASE(aPasswdFileLineCannotSpeakForTheBackend) {
    test::TempDir dir;
    test::writeFile(dir.file("passwd"), "mara@example.test:{PLAIN}marapw::::::postern.replica_read=0\n");
    PluginLoader loader{test::pluginDir()};
    auto handle = loader.load("passwd-file", "users", {{"path", dir.file("passwd")}});
    AuthFacade facade({{"users", handle.get(), {"*"}}});
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)});
    facade.setCache(&cache);
    BOOST_TEST(name(facade.authenticate(request("mara@example.test", "guess")).status) == "BadCredentials");
    const auto hits = cache.hits();
    BOOST_TEST(name(facade.authenticate(request("mara@example.test", "guess")).status) == "BadCredentials");
    BOOST_TEST(cache.hits() == hits + 1);  // the failure was remembered
}

BOOST_AUTO_TEST_CASE(dovecotsAllowNetsRestrictsWhereAnAccountLogsIn) {
    // A passwd-file migrated from Dovecot keeps its allow_nets (a comma-separated list); lost, the
    // restriction would fail open. A success is cached for its client address only.
    test::TempDir dir;
    test::writeFile(dir.file("passwd"), "ines@example.test:{PLAIN}inespw::::::allow_nets=10.0.0.0/8,192.0.2.0/28,local\n"
                                        "olga@example.test:{PLAIN}olgapw::::::allow_nets=\n"
                                        "rita@example.test:{PLAIN}ritapw::::::allow_nets=10.0.0.0/8 allow_real_nets=10.1.0.0/16\n"
                                        "fay@example.test:{PLAIN}faypw::::::fail=y\n");
    PluginLoader loader{test::pluginDir()};
    auto handle = loader.load("passwd-file", "nets", {{"path", dir.file("passwd")}});
    AuthFacade facade({{"nets", handle.get(), {"*"}}});
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)});
    facade.setCache(&cache);
    auto from = [&](const std::string& user, const std::string& password, const char* ip) {
        core::AuthRequest r = request(user, password);
        r.client.ip = Poco::Net::IPAddress(ip);
        return name(facade.authenticate(r).status);
    };
    BOOST_TEST(from("ines@example.test", "inespw", "192.0.2.7") == "Ok");
    BOOST_TEST(from("ines@example.test", "inespw", "192.0.2.7") == "Ok");  // cached
    BOOST_TEST(from("ines@example.test", "inespw", "10.20.30.40") == "Ok");
    log->clear();
    BOOST_TEST(from("ines@example.test", "inespw", "192.0.2.77") == "BadCredentials");  // not from the cache
    BOOST_TEST(from("ines@example.test", "inespw", "2001:db8::1") == "BadCredentials");
    const auto lines = log->lines();
    BOOST_REQUIRE(!lines.empty());
    BOOST_TEST(lines[0].find("result=bad_password") != std::string::npos, lines[0]);
    BOOST_TEST(lines[0].find("allow_nets: 192.0.2.77 is not in 10.0.0.0/8,192.0.2.0/28,local") != std::string::npos, lines[0]);
    // An empty list allows nothing (as in Dovecot); the wrong password stays wrong.
    BOOST_TEST(from("olga@example.test", "olgapw", "192.0.2.7") == "BadCredentials");
    BOOST_TEST(from("ines@example.test", "wrong", "10.1.1.1") == "BadCredentials");
    // allow_real_nets too (both must pass); Dovecot's fail field refuses.
    BOOST_TEST(from("rita@example.test", "ritapw", "10.1.2.3") == "Ok");
    BOOST_TEST(from("rita@example.test", "ritapw", "10.2.2.3") == "BadCredentials");
    BOOST_TEST(from("fay@example.test", "faypw", "10.1.2.3") == "BadCredentials");
}

BOOST_AUTO_TEST_CASE(anAppPasswordsLastUseIsWrittenOnlyWhenItChanges) {
    // PostgreSQL's host() and POCO write some IPv6 addresses differently: the same address
    // must not cost an UPDATE at every login.
    struct AppBackend : test::VerifyingBackend {
        api::AuthAnswer authenticate(const std::string&, const std::string&, const std::string&,
                                     const std::string&) noexcept override {
            api::AuthAnswer a;
            a.status = api::Status::Ok;
            a.verified = true;
            a.record.user = "vera@bind.test";
            a.appPasswordId = "ap1";
            a.appPasswordLastUsed = std::chrono::duration_cast<std::chrono::seconds>(
                                        std::chrono::system_clock::now().time_since_epoch()).count();
            a.appPasswordLastIp = "2001:0:0:1::1";  // as PostgreSQL prints it
            return a;
        }
        api::WriteAnswer touchAppPassword(const std::string&, const std::string&, const std::string&) noexcept override {
            ++touches;
            return {api::WriteStatus::Ok, ""};
        }
        std::atomic<int> touches{0};
    } app;
    AuthFacade facade({{"app", &app, {"bind.test"}}});
    auto from = [&](const char* ip) {
        core::AuthRequest r = request("vera@bind.test", "any");
        r.client.ip = Poco::Net::IPAddress(ip);
        return name(facade.authenticate(r).status);
    };
    BOOST_TEST(from("2001:0:0:1:0:0:0:1") == "Ok");  // POCO: 2001::1:0:0:0:1
    BOOST_TEST(app.touches == 0);
    BOOST_TEST(from("2001:db8::7") == "Ok");
    BOOST_TEST(app.touches == 1);
}

BOOST_AUTO_TEST_CASE(refusesLoginsWithSpacesWithoutAskingTheBackend) {
    // A directory may ignore the spaces (LDAP drops leading ones when it compares mail),
    // which would give every spelling of one login a penalty counter of its own.
    test::VerifyingBackend bind;
    AuthFacade facade({{"ldap", &bind, {"bind.test"}}});
    // Nor an empty local part or domain ("vera@" found by a %n filter: a third counter).
    for (const char* login : {" vera@bind.test", "vera@bind.test ", "ve ra@bind.test", "vera@bind.test\t", "vera@",
                              "@bind.test"}) {
        BOOST_TEST(name(facade.authenticate(request(login, "bindpw")).status) == "BadCredentials", login);
    }
    BOOST_TEST(bind.calls == 0);
    BOOST_TEST(name(facade.authenticate(request("vera@bind.test", "bindpw")).status) == "Ok");
}

BOOST_AUTO_TEST_CASE(knowsItsDomains) {
    AuthFacade facade({users()});
    BOOST_TEST(name(facade.isLocalDomain("example.test")) == "Yes");
    BOOST_TEST(name(facade.isLocalDomain("EXAMPLE.test.")) == "Yes");
    BOOST_TEST(name(facade.isLocalDomain("remote.test")) == "No");
    BOOST_TEST(name(facade.isLocalDomain("")) == "No");
}

BOOST_AUTO_TEST_CASE(resolvesMailboxesAndAliases) {
    AuthFacade facade({users()});
    auto alice = facade.lookupRecipient("Alice@Example.test");
    BOOST_TEST(name(alice.answer) == "Yes");
    BOOST_TEST(alice.mailboxes == Strings{"example.test/a/alice"}, boost::test_tools::per_element());
    BOOST_TEST(alice.forwards.empty());

    auto pm = facade.lookupRecipient("postmaster@example.test");
    BOOST_TEST(name(pm.answer) == "Yes");
    BOOST_TEST(pm.mailboxes == Strings{"example.test/a/alice"}, boost::test_tools::per_element());

    // Bare local part = alias's domain; duplicates collapse; remote goes to forwards.
    auto team = facade.lookupRecipient("team@example.test");
    BOOST_TEST(name(team.answer) == "Yes");
    BOOST_TEST(team.mailboxes == (Strings{"example.test/a/alice", "example.test/bob"}), boost::test_tools::per_element());
    BOOST_TEST(team.forwards == Strings{"friend@remote.test"}, boost::test_tools::per_element());

    // A user that is also an alias keeps a copy and forwards one.
    auto frank = facade.lookupRecipient("frank@example.test");
    BOOST_TEST(name(frank.answer) == "Yes");
    BOOST_TEST(frank.mailboxes == Strings{"example.test/frank"}, boost::test_tools::per_element());
    BOOST_TEST(frank.forwards == Strings{"frank@remote.test"}, boost::test_tools::per_element());

    // nologin still receives.
    BOOST_TEST(name(facade.lookupRecipient("dave@example.test").answer) == "Yes");

    // An unknown destination is dropped when another one works.
    auto half = facade.lookupRecipient("half@example.test");
    BOOST_TEST(name(half.answer) == "Yes");
    BOOST_TEST(half.mailboxes == Strings{"example.test/bob"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknownDisabledAndDeadEndAddressesAreNo) {
    AuthFacade facade({users()});
    for (std::string a : {"nobody@example.test", "carol@example.test", "ghost@example.test",
                          "gone@example.test", "loop1@example.test", "", "no-domain"}) {
        auto r = facade.lookupRecipient(a);
        BOOST_TEST(name(r.answer) == "No", a);
        BOOST_TEST(r.mailboxes.empty());
        BOOST_TEST(r.forwards.empty());
    }
}

BOOST_AUTO_TEST_CASE(boundsAliasDepth) {
    AuthFacade facade({users()});
    // deep2 -> deep3 ... -> deep10 -> alice: alice is 9 levels below deep2 (too deep).
    BOOST_TEST(name(facade.lookupRecipient("deep2@example.test").answer) == "TempFail");
    // deep3 -> ... -> deep10 -> alice: 8 levels, allowed.
    auto r = facade.lookupRecipient("deep3@example.test");
    BOOST_TEST(name(r.answer) == "Yes");
    BOOST_TEST(r.mailboxes == Strings{"example.test/a/alice"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(aRemoteDestinationWhoseDomainCannotBeCheckedIsTempFail) {
    test::TempFailBackend down;
    AuthFacade facade({users(), {"ldap", &down, {"remote.test"}}});
    BOOST_TEST(name(facade.lookupRecipient("team@example.test").answer) == "TempFail");
    BOOST_TEST(name(facade.lookupRecipient("alice@example.test").answer) == "Yes");
}

BOOST_AUTO_TEST_CASE(isSafeToCallFromManyThreads) {
    AuthFacade facade({users()});
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                bool good = (i + t) % 2 == 0;
                auto r = facade.authenticate(request("alice@example.test", good ? "alicepw" : "bad"));
                if ((r.status == AuthStatus::Ok) != good) {
                    ++wrong;
                }
                if (facade.lookupRecipient("team@example.test").mailboxes.size() != 2u) {
                    ++wrong;
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    BOOST_TEST(wrong.load() == 0);
}

BOOST_AUTO_TEST_CASE(quotasTravelWithTheirMailboxes) {
    // quota= on a passwd-file line (bytes or K/M/G, as posternctl --quota); an alias to two
    // users carries both; none, 0, negative: no quota; a bad value is logged, enforces none.
    test::writeFile(tmp.file("qpasswd"),
                    "q1@example.test:{PLAIN}pw::::::quota=2M\n"
                    "q2@example.test:{PLAIN}pw::::::mailbox=example.test/shared quota=1500\n"
                    "q3@example.test:{PLAIN}pw::::::mailbox=example.test/shared quota=1000\n"
                    "q4@example.test:{PLAIN}pw::::::quota=-1\n"
                    "q7@example.test:{PLAIN}pw::::::quota=100B\n"
                    "q5@example.test:{PLAIN}pw::::::quota=lots\n"
                    "q6@example.test:{PLAIN}pw::::::quota=99999999999G\n");
    test::writeFile(tmp.file("qaliases"), "qlist@example.test: q1, q2, q4\nshare@example.test: q2, q3\n");
    BackendHandle q = loader.load("passwd-file", "q", {{"path", tmp.file("qpasswd")}, {"aliases", tmp.file("qaliases")}});
    AuthFacade facade({{"q", q.get(), {"*"}}});
    auto one = facade.lookupRecipient("q1@example.test");
    BOOST_TEST(one.quotas.size() == 1u);
    BOOST_TEST(one.quotas["example.test/q1"] == 2u * 1024 * 1024);
    auto list = facade.lookupRecipient("qlist@example.test");
    BOOST_TEST(list.mailboxes.size() == 3u);
    BOOST_TEST(list.quotas.size() == 2u);  // q4's -1: none
    BOOST_TEST(list.quotas["example.test/shared"] == 1500u);
    // One mailbox, two users with quotas: the smaller one.
    BOOST_TEST(facade.lookupRecipient("share@example.test").quotas["example.test/shared"] == 1000u);
    BOOST_TEST(facade.lookupRecipient("q7@example.test").quotas["example.test/q7"] == 100u);
    log->clear();
    for (const char* bad : {"q5@example.test", "q6@example.test"}) {
        auto r = facade.lookupRecipient(bad);
        BOOST_TEST(name(r.answer) == "Yes");
        BOOST_TEST(r.quotas.empty());
    }
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 2u);
    BOOST_TEST(lines[0].find("event=rcpt.bad_quota rcpt=q5@example.test") != std::string::npos, lines[0]);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
