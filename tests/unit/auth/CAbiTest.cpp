// Tests of the C plugin boundary (plugins/api/postern_plugin.h): every real plugin loads through
// PluginLoader and answers through the C table; a plugin written in C loads too; another ABI
// version or a too small table is refused with one line; statuses outside a call's set fail
// closed; writes cross the boundary (passwd-file round trip; LDAP says Unsupported).
#include "auth/PluginLoader.h"

#include "unit/auth/AuthTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace postern::auth {
namespace {

namespace api = plugins::api;
using test::TempDir;

const std::string TestPluginDir = POSTERN_TEST_PLUGIN_DIR;

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

template <typename F>
std::string errorOf(F&& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(CAbiTest)

BOOST_AUTO_TEST_CASE(everyRealPluginLoadsThroughTheCTable) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}pw\n");
    PluginLoader loader(test::pluginDir());

    BackendHandle pf = loader.load("passwd-file", "local", {{"path", tmp.file("passwd")}});
    BOOST_TEST(pf.pluginName() == "passwd-file");
    auto a = pf->authenticate("alice@example.test", "pw", "smtp", "192.0.2.1");
    BOOST_TEST((a.status == api::Status::Ok));
    BOOST_TEST(a.record.passwordHash == "{PLAIN}pw");
    BOOST_TEST(a.record.senderAddresses == std::vector<std::string>{"alice@example.test"});
    BOOST_TEST((pf->probe().status == api::Status::Ok));

    // Nothing listens on port 1: create() does not connect, the probe says why not.
    BackendHandle pg = loader.load("postgres", "pg",
                                   {{"conninfo", "host=127.0.0.1 port=1 dbname=x user=x"}, {"connect_timeout", "2s"}});
    BOOST_TEST(pg.pluginName() == "postgres");
    BOOST_TEST(!pg.pluginVersion().empty());
    auto probe = pg->probe();
    BOOST_TEST((probe.status == api::Status::TempFail));
    BOOST_TEST(probe.detail.find("postgres:") == 0u, probe.detail);
    auto w = pg->setPassword("alice@example.test", "{PLAIN}x");
    BOOST_TEST((w.status == api::WriteStatus::TempFail), w.detail);

    BackendHandle ldap = loader.load("ldap", "dir", {{"uris", "ldap://127.0.0.1:1"}, {"base", "dc=example,dc=test"}});
    BOOST_TEST(ldap.pluginName() == "ldap");
    // Read-only: every write says so, with a reason (posternctl prints it).
    for (const auto& answer : {ldap->setPassword("a@example.test", "{PLAIN}x"), ldap->checkNewUser("a@example.test"),
                               ldap->setEnabled("a@example.test", false), ldap->removeUser("a@example.test")}) {
        BOOST_TEST((answer.status == api::WriteStatus::Unsupported));
        BOOST_TEST(!answer.detail.empty());
    }
}

BOOST_AUTO_TEST_CASE(configErrorsComeBackThroughTheErrorBuffer) {
    PluginLoader loader(test::pluginDir());
    std::string error = errorOf([&] { loader.load("postgres", "pg", {{"conninfo", "x"}, {"colour", "blue"}}); });
    BOOST_TEST(error.find("auth backend pg (plugin postgres): postgres: unknown config key 'colour'") == 0u, error);
    error = errorOf([&] {
        loader.load("postgres", "pg", {{"conninfo", "x"}, {"set_password_query", "UPDATE users SET x = 1 WHERE a = $1"}});
    });
    BOOST_TEST(error.find("'set_password_query' must use $2") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(passwdFileWritesCrossTheBoundary) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "# kept\nalice@example.test:{PLAIN}pw\n");
    PluginLoader loader(test::pluginDir());
    BackendHandle h = loader.load("passwd-file", "local", {{"path", tmp.file("passwd")}, {"check_interval", "0"}},
                                  POSTERN_CREATE_ADMIN);

    BOOST_TEST((h->checkNewUser("alice@example.test").status == api::WriteStatus::Exists));
    BOOST_TEST((h->checkNewUser("bob@example.test").status == api::WriteStatus::Ok));
    api::NewUser bob;
    bob.address = "bob@example.test";
    bob.passwordHash = "{PLAIN}bob-pw";
    bob.senders = {"b@example.test"};
    // A mailbox that would make another field or line of the file is refused.
    for (const char* bad : {"b senders=ceo@example.test", "b\nroot@example.test:{PLAIN}x", "b:c"}) {
        bob.mailbox = bad;
        BOOST_TEST((h->addUser(bob).status == api::WriteStatus::Invalid), bad);
    }
    bob.mailbox = "example.test/b";
    BOOST_TEST((h->addUser(bob).status == api::WriteStatus::Ok));
    bob.quotaBytes = 5;
    auto quota = h->addUser(bob);
    BOOST_TEST((quota.status == api::WriteStatus::Unsupported));
    BOOST_TEST(quota.detail.find("--quota") != std::string::npos, quota.detail);

    api::UserInfo info;
    BOOST_TEST((h->showUser("Bob@Example.test", info).status == api::WriteStatus::Ok));
    BOOST_TEST(info.address == "bob@example.test");
    BOOST_TEST(info.scheme == "PLAIN");
    BOOST_TEST(info.mailbox == "example.test/b");
    BOOST_TEST(info.senders == (std::vector<std::string>{"bob@example.test", "b@example.test"}));
    BOOST_TEST(info.enabled);

    BOOST_TEST((h->setPassword("alice@example.test", "{PLAIN}new").status == api::WriteStatus::Ok));
    BOOST_TEST((h->authenticate("alice@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}new"));
    // The rehash's compare-and-set writes only over the hash it names.
    auto changed = h->replacePassword("alice@example.test", "{PLAIN}old", "{PLAIN}rehashed");
    BOOST_TEST((changed.status == api::WriteStatus::Changed));
    BOOST_TEST(changed.detail == "the stored hash of alice@example.test changed");
    BOOST_TEST((h->authenticate("alice@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}new"));
    BOOST_TEST((h->replacePassword("alice@example.test", "{PLAIN}new", "{PLAIN}rehashed").status ==
                api::WriteStatus::Ok));
    BOOST_TEST((h->authenticate("alice@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}rehashed"));
    BOOST_TEST((h->replacePassword("ghost@example.test", "{PLAIN}new", "{PLAIN}x").status ==
                api::WriteStatus::UnknownUser));
    BOOST_TEST((h->setPassword("alice@example.test", "{PLAIN}new").status == api::WriteStatus::Ok));
    BOOST_TEST((h->setEnabled("bob@example.test", false).status == api::WriteStatus::Ok));
    BOOST_TEST((h->authenticate("bob@example.test", "", "smtp", "").status == api::Status::Disabled));

    std::vector<api::UserInfo> users;
    BOOST_TEST((h->listUsers("example.test", users).status == api::WriteStatus::Ok));
    BOOST_REQUIRE_EQUAL(users.size(), 2u);
    BOOST_TEST(users[0].address == "alice@example.test");
    BOOST_TEST(!users[1].enabled);

    BOOST_TEST((h->removeUser("ghost@example.test").status == api::WriteStatus::UnknownUser));
    BOOST_TEST((h->removeUser("bob@example.test").status == api::WriteStatus::Ok));
    BOOST_TEST(readFile(tmp.file("passwd")) == "# kept\nalice@example.test:{PLAIN}new\n");
    // A hash that would break the line format is refused before anything is written.
    BOOST_TEST((h->setPassword("alice@example.test", "{PLAIN}a:b").status == api::WriteStatus::Invalid));
}

BOOST_AUTO_TEST_CASE(passwdFileWithCrlfLineEndsTakesTheRehash) {
    // A two-field line of a CRLF file: its CR was part of the hash the compare-and-set
    // compared, so the rehash never matched ("changed") and was redone at every login.
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}old\r\nbob@example.test:{PLAIN}b::::::quota=1G\r\n");
    PluginLoader loader(test::pluginDir());
    BackendHandle h = loader.load("passwd-file", "local", {{"path", tmp.file("passwd")}, {"check_interval", "0"}});
    BOOST_TEST((h->authenticate("alice@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}old"));
    BOOST_TEST((h->replacePassword("alice@example.test", "{PLAIN}old", "{PLAIN}rehashed").status == api::WriteStatus::Ok));
    BOOST_TEST((h->authenticate("alice@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}rehashed"));
    BOOST_TEST((h->authenticate("bob@example.test", "", "smtp", "").record.passwordHash == "{PLAIN}b"));
}

BOOST_AUTO_TEST_CASE(passwdFileShowsTheQuotaTheServerEnforces) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "carol@quota.test:{PLAIN}pw::::::quota=20M\n"
                                        "dave@quota.test:{PLAIN}pw::::::quota=-1\n"
                                        "erin@quota.test:{PLAIN}pw::::::quota=lots\n");
    PluginLoader loader(test::pluginDir());
    BackendHandle h = loader.load("passwd-file", "local", {{"path", tmp.file("passwd")}, {"check_interval", "0"}},
                                  POSTERN_CREATE_ADMIN);
    // posternctl user show: the quota= field the server enforces, 0 when none or unreadable.
    for (auto [user, bytes] : {std::pair{"carol", 20ull << 20}, std::pair{"dave", 0ull}, std::pair{"erin", 0ull}}) {
        api::UserInfo shown;
        BOOST_TEST((h->showUser(std::string(user) + "@quota.test", shown).status == api::WriteStatus::Ok));
        BOOST_TEST(shown.quotaBytes == bytes, user);
    }
}

BOOST_AUTO_TEST_CASE(adminModeStartsFromAMissingFile) {
    TempDir tmp;
    PluginLoader loader(test::pluginDir());
    // The daemon refuses a missing passwd-file; posternctl's first "user add" creates it.
    BOOST_TEST(errorOf([&] { loader.load("passwd-file", "local", {{"path", tmp.file("new")}}); }).find("cannot open") !=
               std::string::npos);
    BackendHandle h = loader.load("passwd-file", "local", {{"path", tmp.file("new")}}, POSTERN_CREATE_ADMIN);
    api::NewUser u;
    u.address = "first@example.test";
    u.passwordHash = "{PLAIN}x";
    BOOST_TEST((h->addUser(u).status == api::WriteStatus::Ok));
    BOOST_TEST(readFile(tmp.file("new")) == "first@example.test:{PLAIN}x::::::\n");
    BOOST_TEST(((std::filesystem::status(tmp.file("new")).permissions() & std::filesystem::perms::all) ==
                (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)));
}

BOOST_AUTO_TEST_CASE(aPluginWrittenInCLoadsAndAnswers) {
    PluginLoader loader(TestPluginDir);
    BackendHandle h = loader.load("ctest", "c", {});
    BOOST_TEST(h.pluginName() == "ctest");
    auto a = h->authenticate("c@example.test", "c-pw", "pop3", "192.0.2.9");
    BOOST_TEST((a.status == api::Status::Ok));
    BOOST_TEST(a.record.passwordHash == "{PLAIN}c-pw");
    BOOST_TEST((h->authenticate("x@example.test", "", "smtp", "").status == api::Status::UnknownUser));
    BOOST_TEST((h->hasDomain("example.test") == api::Status::Ok));
    BOOST_TEST((h->hasDomain("other.test") == api::Status::NotFound));
    BOOST_TEST((h->probe().status == api::Status::Ok));
    // A status number outside the read set is not an answer: TempFail (fail closed).
    BOOST_TEST((h->lookup("odd@example.test").status == api::Status::TempFail));
    BOOST_TEST((h->lookup("nobody@example.test").status == api::Status::NotFound));
    // A write the plugin declines, with its message; one it has no function for.
    auto w = h->setPassword("c@example.test", "{PLAIN}x");
    BOOST_TEST((w.status == api::WriteStatus::Unsupported));
    BOOST_TEST(w.detail == "ctest is read-only");
    BOOST_TEST((h->removeUser("c@example.test").status == api::WriteStatus::Unsupported));
    // The optional compare-and-set, through the C table.
    BOOST_TEST((h->replacePassword("c@example.test", "{PLAIN}old", "{PLAIN}x").status == api::WriteStatus::Changed));
    // create()'s error buffer.
    std::string error = errorOf([&] { loader.load("ctest", "c2", {{"k", "v"}}); });
    BOOST_TEST(error == "auth backend c2 (plugin ctest): ctest: takes no config keys");
}

BOOST_AUTO_TEST_CASE(anotherAbiVersionIsRefusedWithOneLineNamingBoth) {
    PluginLoader loader(TestPluginDir);
    std::string error = errorOf([&] { loader.load("oldabi", "x", {}); });
    BOOST_TEST(error == "plugin oldabi was built for ABI 2, posternd speaks ABI " + std::to_string(api::AbiVersion));
    error = errorOf([&] { loader.load("tableabi", "x", {}); });
    BOOST_TEST(error == "plugin tableabi has a function table for ABI " + std::to_string(api::AbiVersion + 1) +
                            ", posternd speaks ABI " +
                            std::to_string(api::AbiVersion));
}

BOOST_AUTO_TEST_CASE(aTooSmallTableIsRefused) {
    PluginLoader loader(TestPluginDir);
    std::string error = errorOf([&] { loader.load("smalltable", "x", {}); });
    BOOST_TEST(error == "plugin smalltable has a function table of " +
                            std::to_string(offsetof(postern_plugin_table, set_password)) + " bytes, posternd needs " +
                            std::to_string(POSTERN_PLUGIN_TABLE_MIN_SIZE) + " (ABI " +
                            std::to_string(api::AbiVersion) + ")");
}

BOOST_AUTO_TEST_CASE(aTableBuiltBeforeTheOptionalMembersLoads) {
    // replace_password was appended to ABI 4: a plugin built before it still loads, and the
    // host does not read past its table (this variant's function would answer Changed): the
    // rehash falls back to set_password.
    PluginLoader loader(TestPluginDir);
    BackendHandle h = loader.load("noreplace", "old", {});
    BOOST_TEST((h->authenticate("c@example.test", "c-pw", "pop3", "").status == api::Status::Ok));
    BOOST_TEST((h->replacePassword("c@example.test", "{PLAIN}c-pw", "{PLAIN}x").status ==
                api::WriteStatus::Unsupported));
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
