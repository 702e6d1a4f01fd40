// App passwords: the password format and the scope / expiry / networks decision
// (plugins/api/AppPassword.h), the passwd-file extra fields (parser and editor, through the
// plugin as posternd loads it), and the whole login through AuthFacade and its cache.
#include "api/AppPassword.h"
#include "auth/AuthCache.h"
#include "auth/AuthFacade.h"
#include "auth/PluginLoader.h"

#include "unit/auth/AuthTestSupport.h"

#include <Poco/Net/IPAddress.h>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <thread>

#include <fstream>
#include <sstream>

namespace postern::auth {
namespace {

namespace api = plugins::api;
namespace ap = plugins::api::apppw;
using test::TempDir;

const std::string Id = "abcdefgh";
const std::string Password = Id + "-" + std::string(24, 'q');  // app password format
// PLAIN hashes keep the test fast; the format is the same for ARGON2ID.
const std::string Hash = "{PLAIN}" + Password;

std::string readAll(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(app_password_format)

BOOST_AUTO_TEST_CASE(idOnlyFromTheExactFormat) {
    BOOST_TEST(ap::idOf(Password).value_or("") == Id);
    BOOST_TEST(!ap::idOf("abcdefgh-short"));
    BOOST_TEST(!ap::idOf("ABCDEFGH-" + std::string(24, 'q')));  // upper case: not ours
    BOOST_TEST(!ap::idOf("abcdefg1-" + std::string(24, 'q')));  // '1' is not base32
    BOOST_TEST(!ap::idOf("abcdefghq" + std::string(24, 'q')));  // no '-'
    BOOST_TEST(!ap::idOf(Password + "x"));
    BOOST_TEST(!ap::idOf(""));
}

BOOST_AUTO_TEST_CASE(scopes) {
    BOOST_TEST(ap::parseScopes("smtp") == ap::ScopeSmtp);
    BOOST_TEST(ap::parseScopes("pop3") == ap::ScopePop3);
    BOOST_TEST(ap::parseScopes("all") == ap::ScopeAll);
    BOOST_TEST(ap::parseScopes("pop3,smtp") == ap::ScopeAll);
    BOOST_TEST(ap::parseScopes("imap") == 0u);
    BOOST_TEST(ap::parseScopes("smtp,") == 0u);
    BOOST_TEST(ap::parseScopes("") == 0u);
    BOOST_TEST(ap::scopesText(ap::ScopeAll) == "smtp,pop3");
}

BOOST_AUTO_TEST_CASE(networks) {
    unsigned char ip[16];
    auto net = ap::Network::parse("10.0.0.0/8");
    BOOST_REQUIRE(net);
    BOOST_REQUIRE(ap::parseAddress("10.200.1.2", ip));
    BOOST_TEST(net->contains(ip));
    BOOST_REQUIRE(ap::parseAddress("::ffff:10.1.2.3", ip));  // IPv4-mapped client
    BOOST_TEST(net->contains(ip));
    BOOST_REQUIRE(ap::parseAddress("11.0.0.1", ip));
    BOOST_TEST(!net->contains(ip));
    auto v6 = ap::Network::parse("2001:db8::/32");
    BOOST_REQUIRE(v6);
    BOOST_REQUIRE(ap::parseAddress("2001:db8:1::5", ip));
    BOOST_TEST(v6->contains(ip));
    BOOST_REQUIRE(ap::parseAddress("2001:db9::5", ip));
    BOOST_TEST(!v6->contains(ip));
    auto host = ap::Network::parse("192.0.2.7");
    BOOST_REQUIRE(host);
    BOOST_REQUIRE(ap::parseAddress("192.0.2.7", ip));
    BOOST_TEST(host->contains(ip));
    BOOST_REQUIRE(ap::parseAddress("192.0.2.8", ip));
    BOOST_TEST(!host->contains(ip));
    auto all = ap::Network::parse("0.0.0.0/0");
    BOOST_REQUIRE(all);
    BOOST_TEST(all->contains(ip));
    BOOST_TEST(!ap::Network::parse("10.0.0.0/33"));
    BOOST_TEST(!ap::Network::parse("10.0.0.0/"));
    BOOST_TEST(!ap::Network::parse("example.org"));
    BOOST_TEST(ap::validNetworks(""));
    BOOST_TEST(ap::validNetworks("10.0.0.0/8,2001:db8::/32"));
    BOOST_TEST(!ap::validNetworks("10.0.0.0/8,nonsense"));
}

BOOST_AUTO_TEST_CASE(decision) {
    ap::Entry e;
    e.id = Id;
    e.scopes = ap::ScopeSmtp;
    const std::int64_t now = 1'800'000'000;
    BOOST_TEST(ap::refusal(e, "smtp", "192.0.2.7", now) == "");
    BOOST_TEST(ap::refusal(e, "pop3", "192.0.2.7", now) == "app password abcdefgh is not valid for pop3 (scope smtp)");
    BOOST_TEST(ap::refusal(e, "imap", "192.0.2.7", now) != "");
    e.expires = now + 1;
    BOOST_TEST(ap::refusal(e, "smtp", "192.0.2.7", now) == "");
    e.expires = now;
    BOOST_TEST(ap::refusal(e, "smtp", "192.0.2.7", now) == "app password abcdefgh has expired");
    e.expires = 0;
    e.networks = "10.0.0.0/8,192.0.2.0/24";
    BOOST_TEST(ap::refusal(e, "smtp", "192.0.2.7", now) == "");
    BOOST_TEST(ap::refusal(e, "smtp", "10.9.9.9", now) == "");
    BOOST_TEST(ap::refusal(e, "smtp", "198.51.100.1", now) ==
               "app password abcdefgh is not valid from 198.51.100.1 (networks 10.0.0.0/8,192.0.2.0/24)");
    BOOST_TEST(ap::refusal(e, "smtp", "", now) != "");  // unknown client: fail closed
    e.networks.clear();
    e.revoked = now - 5;
    BOOST_TEST(ap::refusal(e, "smtp", "192.0.2.7", now) == "app password abcdefgh is revoked");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(app_password_passwd_file)

// Why the user of a line with these extra fields is not loaded ("" = it is): a bad field
// breaks its user only (a temporary failure that names the line), not the file.
std::string loadError(const std::string& extra) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "a@x.test:{PLAIN}main::::::" + extra + "\nb@x.test:{PLAIN}b\n");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}});
    BOOST_TEST((b->authenticate("b@x.test", "b", "smtp", "").status == api::Status::Ok));
    const auto a = b->authenticate("a@x.test", "main", "smtp", "");
    return a.status == api::Status::TempFail ? a.detail : "";
}

BOOST_AUTO_TEST_CASE(fieldsParseOrTheUserIsBroken) {
    BOOST_TEST(loadError("app_password.abcdefgh=smtp;1700000000;0;;phone;" + Hash) == "");
    BOOST_TEST(loadError("app_password.abcdefgh=smtp,pop3;1;1800000000;10.0.0.0/8,::1;;" + Hash) == "");
    BOOST_TEST(loadError("require_app_password=yes") == "");
    const std::vector<std::pair<std::string, std::string>> bad{
        {"app_password.abcdefg1=smtp;1;0;;;" + Hash, "bad id"},  // keys are case-insensitive; 1 is not base32
        {"app_password.abc=smtp;1;0;;;" + Hash, "bad id"},
        {"app_password.abcdefgh=imap;1;0;;;" + Hash, "bad scopes"},
        {"app_password.abcdefgh=smtp;x;0;;;" + Hash, "bad created time"},
        {"app_password.abcdefgh=smtp;1;-5;;;" + Hash, "bad expiry time"},
        {"app_password.abcdefgh=smtp;1;0;10.0.0.0/99;;" + Hash, "bad networks"},
        {"app_password.abcdefgh=smtp;1;0;;bad/label;" + Hash, "bad label"},
        {"app_password.abcdefgh=smtp;1;0;;;nohash", "{SCHEME}hash"},
        {"app_password.abcdefgh=smtp;1;0", "expected scopes;created;expires;networks;label;hash"},
    };
    for (const auto& [field, error] : bad) {
        const std::string e = loadError(field);
        BOOST_TEST(e.find("passwd:1: ") != std::string::npos, field << " -> " << e);
        BOOST_TEST(e.find(error) != std::string::npos, field << " -> " << e);
    }
}

struct PasswdFixture {
    TempDir tmp;
    PluginLoader loader{test::pluginDir()};
    BackendHandle admin;
    BackendHandle daemon;

    PasswdFixture() {
        test::writeFile(tmp.file("passwd"),
                        "# users\na@x.test:{PLAIN}main::::::mailbox=x/a quota=5\nb@x.test:{PLAIN}other\n");
        admin = loader.load("passwd-file", "admin", {{"path", tmp.file("passwd")}}, POSTERN_CREATE_ADMIN);
        daemon = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"check_interval", "0"}});
    }

    api::NewAppPassword app(const std::string& scopes, const std::string& networks = "", std::int64_t expires = 0) {
        api::NewAppPassword n;
        n.user = "a@x.test";
        n.id = Id;
        n.label = "phone";
        n.passwordHash = Hash;
        n.scopes = scopes;
        n.networks = networks;
        n.expires = expires;
        n.created = 1'700'000'000;
        return n;
    }
};

BOOST_FIXTURE_TEST_CASE(editorAddsListsRevokesAndKeepsTheRestOfTheLine, PasswdFixture) {
    BOOST_TEST(static_cast<int>(admin->addAppPassword(app("smtp", "10.0.0.0/8, 192.0.2.0/24")).status) ==
               static_cast<int>(api::WriteStatus::Ok));
    BOOST_TEST(static_cast<int>(admin->addAppPassword(app("smtp")).status) ==
               static_cast<int>(api::WriteStatus::Exists));
    auto other = app("pop3");
    other.user = "nobody@x.test";
    BOOST_TEST(static_cast<int>(admin->addAppPassword(other).status) ==
               static_cast<int>(api::WriteStatus::UnknownUser));
    auto badScope = app("imap");
    BOOST_TEST(static_cast<int>(admin->addAppPassword(badScope).status) ==
               static_cast<int>(api::WriteStatus::Invalid));
    BOOST_TEST(static_cast<int>(admin->setRequireAppPassword("a@x.test", true).status) ==
               static_cast<int>(api::WriteStatus::Ok));

    const std::string text = readAll(tmp.file("passwd"));
    BOOST_TEST(text == "# users\na@x.test:{PLAIN}main::::::mailbox=x/a quota=5 app_password.abcdefgh=smtp;1700000000;0;"
                       "10.0.0.0/8,192.0.2.0/24;phone;" + Hash + " require_app_password=yes\nb@x.test:{PLAIN}other\n");

    bool require = false;
    std::vector<api::AppPasswordInfo> list;
    BOOST_TEST(static_cast<int>(admin->listAppPasswords("a@x.test", require, list).status) ==
               static_cast<int>(api::WriteStatus::Ok));
    BOOST_TEST(require);
    BOOST_REQUIRE(list.size() == 1u);
    BOOST_TEST(list[0].id == Id);
    BOOST_TEST(list[0].scopes == "smtp");
    BOOST_TEST(list[0].networks == "10.0.0.0/8,192.0.2.0/24");
    BOOST_TEST(list[0].label == "phone");

    // Quota and mailbox stay user attributes; the app password never reaches them.
    api::AuthAnswer a = daemon->authenticate("a@x.test", "main", "smtp", "192.0.2.7");
    BOOST_TEST(a.record.extra.count("quota") == 1u);
    BOOST_TEST(a.record.extra.size() == 1u);

    BOOST_TEST(static_cast<int>(admin->revokeAppPassword("a@x.test", "zzzzzzzz").status) ==
               static_cast<int>(api::WriteStatus::UnknownUser));
    BOOST_TEST(static_cast<int>(admin->revokeAppPassword("a@x.test", Id).status) ==
               static_cast<int>(api::WriteStatus::Ok));
    BOOST_TEST(static_cast<int>(admin->setRequireAppPassword("a@x.test", false).status) ==
               static_cast<int>(api::WriteStatus::Ok));
    BOOST_TEST(readAll(tmp.file("passwd")) == "# users\na@x.test:{PLAIN}main::::::mailbox=x/a quota=5\nb@x.test:{PLAIN}other\n");
}

BOOST_FIXTURE_TEST_CASE(revokeOfAnUnknownIdOnAHandEditedLineIsNotASuccess, PasswdFixture) {
    // Two blanks and a tab between the extra fields (hand edited, as Dovecot allows): the
    // rewritten field differed from the old one, so a mistyped id was reported revoked and
    // the line rewritten, while the real app password stayed valid.
    BOOST_REQUIRE(admin->addAppPassword(app("smtp")).status == api::WriteStatus::Ok);
    std::string text = readAll(tmp.file("passwd"));
    const auto at = text.find(" app_password.");
    BOOST_REQUIRE(at != std::string::npos);
    text.replace(at, 1, "  \t");
    test::writeFile(tmp.file("passwd"), text);
    BOOST_TEST(static_cast<int>(admin->revokeAppPassword("a@x.test", "zzzzzzzz").status) ==
               static_cast<int>(api::WriteStatus::UnknownUser));
    BOOST_TEST(readAll(tmp.file("passwd")) == text);  // untouched
    BOOST_TEST(static_cast<int>(admin->revokeAppPassword("a@x.test", Id).status) ==
               static_cast<int>(api::WriteStatus::Ok));
    BOOST_TEST(readAll(tmp.file("passwd")).find("app_password.") == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(pluginAnswersWithTheAppPasswordsHashAndItsRefusal, PasswdFixture) {
    BOOST_REQUIRE(admin->addAppPassword(app("smtp", "192.0.2.0/24")).status == api::WriteStatus::Ok);
    api::AuthAnswer a = daemon->authenticate("a@x.test", Password, "smtp", "192.0.2.7");
    BOOST_TEST(static_cast<int>(a.status) == static_cast<int>(api::Status::Ok));
    BOOST_TEST(a.appPasswordId == Id);
    BOOST_TEST(a.record.passwordHash == Hash);
    BOOST_TEST(a.refusal == "");
    BOOST_TEST(a.appPasswordIpBound);
    a = daemon->authenticate("a@x.test", Password, "pop3", "192.0.2.7");
    BOOST_TEST(a.refusal == "app password abcdefgh is not valid for pop3 (scope smtp)");
    a = daemon->authenticate("a@x.test", Password, "smtp", "198.51.100.1");
    BOOST_TEST(a.refusal.find("not valid from 198.51.100.1") != std::string::npos);
    // The main password: its own hash, no app password.
    a = daemon->authenticate("a@x.test", "main", "smtp", "192.0.2.7");
    BOOST_TEST(a.record.passwordHash == "{PLAIN}main");
    BOOST_TEST(a.appPasswordId == "");
    BOOST_TEST(a.refusal == "");
    BOOST_REQUIRE(admin->setRequireAppPassword("a@x.test", true).status == api::WriteStatus::Ok);
    a = daemon->authenticate("a@x.test", "main", "smtp", "192.0.2.7");
    BOOST_TEST(a.refusal == ap::MainPasswordRefused);
}

core::AuthRequest request(const std::string& password, const std::string& service, const std::string& ip) {
    core::AuthRequest r;
    r.user = "a@x.test";
    r.password = password;
    r.service = service;
    r.client.ip = Poco::Net::IPAddress(ip);
    return r;
}

BOOST_FIXTURE_TEST_CASE(facadeAndCacheHonourScopeNetworksRevocationAndTheFlag, PasswdFixture) {
    BOOST_REQUIRE(admin->addAppPassword(app("smtp", "192.0.2.0/24")).status == api::WriteStatus::Ok);
    AuthFacade facade({{"users", daemon.get(), {"*"}}});
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)});
    facade.setCache(&cache);
    using S = core::AuthStatus;
    auto status = [&](const std::string& pw, const std::string& svc, const std::string& ip) {
        return static_cast<int>(facade.authenticate(request(pw, svc, ip)).status);
    };
    BOOST_TEST(status(Password, "smtp", "192.0.2.7") == static_cast<int>(S::Ok));
    BOOST_TEST(status(Password, "smtp", "192.0.2.7") == static_cast<int>(S::Ok));  // cache hit
    // The cached success was bound to its IP: another client is asked of the backend, refused.
    BOOST_TEST(status(Password, "smtp", "198.51.100.1") == static_cast<int>(S::BadCredentials));
    BOOST_TEST(status(Password, "pop3", "192.0.2.7") == static_cast<int>(S::BadCredentials));
    BOOST_TEST(status(Id + "-" + std::string(24, 'r'), "smtp", "192.0.2.7") == static_cast<int>(S::BadCredentials));
    // A refusal is not cached as a wrong password: the allowed client still gets in.
    BOOST_TEST(status(Password, "smtp", "192.0.2.8") == static_cast<int>(S::Ok));
    BOOST_TEST(status("main", "pop3", "192.0.2.7") == static_cast<int>(S::Ok));

    // Revoked, and the flag set: the file is re-read (check_interval 0) and the cache is
    // cleared for this user by the next failed login at the latest; without a cache: at once.
    BOOST_REQUIRE(admin->revokeAppPassword("a@x.test", Id).status == api::WriteStatus::Ok);
    BOOST_REQUIRE(admin->setRequireAppPassword("a@x.test", true).status == api::WriteStatus::Ok);
    AuthFacade fresh({{"users", daemon.get(), {"*"}}});
    // Two rewrites by rename may leave the file on the inode number it had (freed by the
    // first, reused by the second): such a change is taken at a second look, a millisecond
    // later here (check_interval 0).
    daemon->lookup("a@x.test");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    BOOST_TEST(static_cast<int>(fresh.authenticate(request(Password, "smtp", "192.0.2.7")).status) ==
               static_cast<int>(S::BadCredentials));
    AuthFacade::Explanation why;
    BOOST_TEST(static_cast<int>(fresh.authenticate(request("main", "pop3", "192.0.2.7"), why).status) ==
               static_cast<int>(S::BadCredentials));
    BOOST_TEST(why.result == "bad_password");
    BOOST_TEST(why.detail == ap::MainPasswordRefused);
}

BOOST_AUTO_TEST_CASE(cacheBoundIpAndMaxAge) {
    auto now = std::chrono::steady_clock::now();
    AuthCache cache({1000, std::chrono::minutes(5), std::chrono::minutes(1)}, [&] { return now; });
    core::AuthIdentity id;
    id.user = "a@x.test";
    cache.storePositive("smtp", "a@x.test", "pw", id, {"192.0.2.7", std::chrono::seconds(10), std::nullopt});
    core::AuthIdentity out;
    BOOST_TEST(static_cast<int>(cache.find("smtp", "a@x.test", "pw", out, "192.0.2.8")) ==
               static_cast<int>(AuthCache::Hit::Miss));
    BOOST_TEST(static_cast<int>(cache.find("smtp", "a@x.test", "pw", out, "192.0.2.7")) ==
               static_cast<int>(AuthCache::Hit::Positive));
    now += std::chrono::seconds(11);  // past the app password's expiry, well within the ttl
    BOOST_TEST(static_cast<int>(cache.find("smtp", "a@x.test", "pw", out, "192.0.2.7")) ==
               static_cast<int>(AuthCache::Hit::Miss));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
