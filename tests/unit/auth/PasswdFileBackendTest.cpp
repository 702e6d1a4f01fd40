// Tests for the passwd-file plugin, loaded through PluginLoader as posternd loads it:
// the file format (table-driven, with the expected error), extra fields and reload on change.
#include "auth/PluginLoader.h"

#include "unit/auth/AuthTestSupport.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <ostream>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

namespace postern::auth {
namespace {

namespace api = plugins::api;
using test::TempDir;

struct FormatRow {
    std::string passwd;
    std::string aliases;
    std::string expectedError;  // "" = loads
};

std::ostream& operator<<(std::ostream& out, const FormatRow& r) {
    return out << "[" << r.passwd << "] [" << r.aliases << "] -> [" << r.expectedError << "]";
}

std::string createError(const TempDir& tmp, const std::string& passwd, const std::string& aliases) {
    test::writeFile(tmp.file("passwd"), passwd);
    test::writeFile(tmp.file("aliases"), aliases);
    PluginLoader loader(test::pluginDir());
    try {
        loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"aliases", tmp.file("aliases")}});
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

const std::vector<FormatRow> FormatRows{
    {"", "", ""},
    {"# comment only\n\n   \n", "# none\n", ""},
    {"a@x.test:{PLAIN}p\n", "", ""},
    {"a@x.test:{PLAIN}p:1000:1000:A User:/home/a:/bin/sh:mailbox=x/a senders=b@x.test\r\n", "", ""},
    {"a@x.test:{PLAIN}p:::::\n", "", ""},
    {"a@x.test\n", "", "passwd:1: expected user:password"},
    {"a@x.test:{PLAIN}p\n:nouser\n", "", "passwd:2: invalid user name"},
    // A valid user's bad line loads the rest (that user is broken: see below).
    {"a@x.test:{PLAIN}p\nA@X.test:{PLAIN}q\n", "", ""},
    {"a@x.test:{PLAIN}p:::::: =x\n", "", ""},
    {"a@x.test:{PLAIN}p::::::mailbox=\n", "", ""},
    {"", "list@x.test: a@x.test, b@y.test\n", ""},
    {"", "list@x.test a@x.test\n", "aliases:1: expected alias: destination"},
    {"", "list@x.test:\n", "aliases:1: alias list@x.test has no destination"},
    {"", "list@x.test: a@x.test\nLIST@x.test: b@x.test\n", "aliases:2: duplicate alias list@x.test"},
    {"", "@x.test: a@x.test\n", "aliases:1: invalid alias address"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(PasswdFileBackendTest)

BOOST_DATA_TEST_CASE(parsesTheFileFormat, boost::unit_test::data::make(FormatRows), row) {
    TempDir tmp;
    std::string error = createError(tmp, row.passwd, row.aliases);
    if (row.expectedError.empty()) {
        BOOST_TEST(error == "");
    } else {
        BOOST_TEST(error.find(row.expectedError) != std::string::npos, error);
    }
}

// A line of a valid user with a bad field, or a user on two lines: the rest of the file is
// taken, that user fails temporarily (neither a wrong password nor "no such user"), and the
// load says which users and why. Review finding: one such line kept the whole last good copy,
// so a disabled or removed account elsewhere kept logging in.
BOOST_AUTO_TEST_CASE(aBadLineBreaksItsUserOnlyAndSaysSo) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "ann@x.test:{PLAIN}a\nbob@x.test:{PLAIN}b\n");
    auto log = test::captureLog("postern.auth.passwd-file");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"check_interval", "0"}});
    BOOST_TEST((b->authenticate("bob@x.test", "b", "smtp", "").status == api::Status::Ok));
    test::replaceFile(tmp.file("passwd"), "ann@x.test:{PLAIN}a::::::mailbox=\n"
                                          "bob@x.test:{PLAIN}b::::::disabled=yes\n"
                                          "cy@x.test:{PLAIN}c\nCY@x.test:{PLAIN}d\ncy@x.test:{PLAIN}e\n");
    BOOST_TEST((b->authenticate("bob@x.test", "b", "smtp", "").status == api::Status::Disabled));  // taken
    const auto ann = b->authenticate("ann@x.test", "a", "smtp", "");
    BOOST_TEST((ann.status == api::Status::TempFail));
    BOOST_TEST(ann.detail.find("passwd:1: mailbox= needs a value") != std::string::npos, ann.detail);
    BOOST_TEST((b->lookup("ann@x.test").status == api::Status::TempFail));
    BOOST_TEST((b->authenticate("cy@x.test", "c", "smtp", "").status == api::Status::TempFail));
    BOOST_TEST(b->lookup("cy@x.test").detail.find("passwd:4: duplicate user cy@x.test") != std::string::npos);
    BOOST_TEST((b->hasDomain("x.test") == api::Status::Ok));
    auto logged = [&](const std::string& what) {
        for (const auto& l : log->lines())
            if (l.find(what) != std::string::npos) return true;
        return false;
    };
    BOOST_TEST(logged("2 users not loaded"));
    // A line that names no valid user still keeps the whole last good copy (it would cut
    // that user out as if removed).
    test::replaceFile(tmp.file("passwd"), "bob@x.test:{PLAIN}b\n:nouser\n");
    BOOST_TEST((b->authenticate("bob@x.test", "b", "smtp", "").status == api::Status::Disabled));
    BOOST_TEST(logged("reload failed, keeping the last good copy"));
}

BOOST_AUTO_TEST_CASE(returnsTheStoredHashAndExtraFields) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"),
                    "# users\n"
                    "Alice@Example.test:{SHA512-CRYPT}$6$x$y:1000:1000:Alice:/home/a:/bin/false:"
                    "mailbox=example.test/a/alice senders=Sales@Example.test,alice@example.test quota=1G\n"
                    "carol@example.test:{PLAIN}c::::::disabled=yes\n"
                    "dave@example.test:{PLAIN}d::::::nologin\n"
                    "erin@example.test:\n");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"local_domains", "Extra.test, more.test."}});

    auto a = b->authenticate("ALICE@example.TEST", "ignored", "smtp", "192.0.2.1");
    BOOST_TEST((a.status == api::Status::Ok));
    BOOST_TEST(!a.verified);
    BOOST_TEST(a.record.user == "alice@example.test");
    BOOST_TEST(a.record.passwordHash == "{SHA512-CRYPT}$6$x$y");
    BOOST_TEST(a.record.mailbox == "example.test/a/alice");
    BOOST_TEST(a.record.senderAddresses == (std::vector<std::string>{"alice@example.test", "sales@example.test"}),
               boost::test_tools::per_element());
    BOOST_TEST(a.record.extra.at("quota") == "1G");

    BOOST_TEST((b->authenticate("carol@example.test", "c", "smtp", "").status == api::Status::Disabled));
    BOOST_TEST((b->authenticate("dave@example.test", "d", "smtp", "").status == api::Status::Disabled));
    BOOST_TEST((b->authenticate("erin@example.test", "", "smtp", "").status == api::Status::Disabled));
    BOOST_TEST((b->authenticate("nobody@example.test", "x", "smtp", "").status == api::Status::UnknownUser));

    // nologin and an empty password stop logins only; disabled=yes also stops mail.
    BOOST_TEST((b->lookup("carol@example.test").status == api::Status::Disabled));
    auto dave = b->lookup("Dave@Example.test");
    BOOST_TEST((dave.status == api::Status::Ok));
    BOOST_TEST(dave.isMailbox);
    BOOST_TEST(dave.record.passwordHash.empty());
    BOOST_TEST((b->lookup("erin@example.test").status == api::Status::Ok));
    BOOST_TEST((b->lookup("nobody@example.test").status == api::Status::NotFound));

    BOOST_TEST((b->hasDomain("example.test") == api::Status::Ok));
    BOOST_TEST((b->hasDomain("extra.test") == api::Status::Ok));
    BOOST_TEST((b->hasDomain("more.test") == api::Status::Ok));
    BOOST_TEST((b->hasDomain("elsewhere.test") == api::Status::NotFound));
}

BOOST_AUTO_TEST_CASE(reloadsWhenTheFilesChangeAndKeepsTheLastGoodCopy) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\n");
    test::writeFile(tmp.file("aliases"), "");
    auto log = test::captureLog("postern.auth.passwd-file");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users",
                         {{"path", tmp.file("passwd")}, {"aliases", tmp.file("aliases")}, {"check_interval", "0"}});
    BOOST_TEST((b->lookup("zed@example.test").status == api::Status::NotFound));

    // Renamed over (new inode).
    test::replaceFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nzed@example.test:{PLAIN}z\n");
    BOOST_TEST((b->lookup("zed@example.test").status == api::Status::Ok));

    // Rewritten in place (same inode, other size): taken at a second look that finds it the
    // same (here at the next call: check_interval 0). A file counts as being written while
    // its mtime is within a quarter of check_interval (here 1 ms) of now: its mtime is set
    // ahead so that a slow machine (ASan) cannot see it settled already at the first look.
    test::writeFile(tmp.file("passwd"), "zed@example.test:{PLAIN}z\n");
    {
        timespec ahead[2];
        ::clock_gettime(CLOCK_REALTIME, &ahead[0]);
        ahead[0].tv_sec += 60;
        ahead[1] = ahead[0];
        BOOST_REQUIRE(::utimensat(AT_FDCWD, tmp.file("passwd").c_str(), ahead, 0) == 0);
    }
    BOOST_TEST((b->lookup("alice@example.test").status == api::Status::Ok));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    BOOST_TEST((b->lookup("alice@example.test").status == api::Status::NotFound));

    // The aliases file counts too, and brings its domain.
    test::replaceFile(tmp.file("aliases"), "info@other.test: zed@example.test\n");
    BOOST_TEST((b->lookup("info@other.test").aliasDestinations ==
                std::vector<std::string>{"zed@example.test"}));
    BOOST_TEST((b->hasDomain("other.test") == api::Status::Ok));

    // A broken file: keep serving the last good copy, log once.
    log->clear();
    test::replaceFile(tmp.file("passwd"), "this line has no password field\n");
    BOOST_TEST((b->lookup("zed@example.test").status == api::Status::Ok));
    BOOST_TEST((b->authenticate("zed@example.test", "z", "pop3", "").status == api::Status::Ok));
    auto lines = log->lines();
    BOOST_REQUIRE(lines.size() == 1u);
    BOOST_TEST(lines[0].find("reload failed, keeping the last good copy") != std::string::npos, lines[0]);

    // A file that disappears: still the last good copy.
    std::filesystem::remove(tmp.file("passwd"));
    BOOST_TEST((b->lookup("zed@example.test").status == api::Status::Ok));

    // Back again, fixed.
    test::replaceFile(tmp.file("passwd"), "yves@example.test:{PLAIN}y\n");
    BOOST_TEST((b->lookup("yves@example.test").status == api::Status::Ok));
    BOOST_TEST((b->lookup("zed@example.test").status == api::Status::NotFound));
}

BOOST_AUTO_TEST_CASE(aFileCaughtInsideARewriteIsNotTakenHalfWay) {
    // `script > users.passwd` truncates, then writes (whole lines or not): a check in between
    // must not answer every user "unknown" (550 for their mail, 535 for their logins). A file
    // changed in place is taken once it has not changed for check_interval / 4 (50 ms here).
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nzed@example.test:{PLAIN}z\n");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"check_interval", "200ms"}});
    auto after = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
    auto status = [&](const char* user) { return b->lookup(user).status; };
    test::writeFile(tmp.file("passwd"), "");  // truncated
    BOOST_TEST((status("zed@example.test") == api::Status::Ok));
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\n");  // one whole line so far
    BOOST_TEST((status("zed@example.test") == api::Status::Ok));
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nyves@example.test:{PLAIN}y\n");  // done
    BOOST_TEST((status("zed@example.test") == api::Status::Ok));
    after(250);  // settled, and the next check is due
    BOOST_TEST((status("yves@example.test") == api::Status::Ok));
    BOOST_TEST((status("zed@example.test") == api::Status::NotFound));
    // Replaced by a rename (a new inode): complete, taken at the next check however new.
    after(230);
    test::replaceFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nzoe@example.test:{PLAIN}z\n");
    BOOST_TEST((status("zoe@example.test") == api::Status::Ok));
    // A file that stays empty (every user removed) is taken once it has settled.
    after(230);
    test::writeFile(tmp.file("passwd"), "");
    BOOST_TEST((status("zoe@example.test") == api::Status::Ok));
    after(250);
    BOOST_TEST((status("zoe@example.test") == api::Status::NotFound));
}

BOOST_AUTO_TEST_CASE(defaultIntervalPicksUpAChangeWithinAFewSeconds) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\n");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}});
    test::replaceFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nzed@example.test:{PLAIN}z\n");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    api::Status status = api::Status::NotFound;
    while (std::chrono::steady_clock::now() < deadline) {
        status = b->lookup("zed@example.test").status;
        if (status == api::Status::Ok) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    BOOST_TEST((status == api::Status::Ok));
}

BOOST_AUTO_TEST_CASE(servesManyThreadsWhileReloading) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\n");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"check_interval", "0"}});
    std::atomic<int> bad{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 4; ++t) {
        readers.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                if (b->authenticate("alice@example.test", "a", "smtp", "").status != api::Status::Ok) {
                    ++bad;
                }
            }
        });
    }
    for (int i = 0; i < 50; ++i) {
        test::replaceFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\nu" + std::to_string(i) +
                                                  "@example.test:{PLAIN}x\n");
    }
    for (auto& t : readers) {
        t.join();
    }
    BOOST_TEST(bad.load() == 0);
}

// Readiness: the files must be readable now, not just once at start-up. (Tests may run as
// root, which reads any file whatever its mode: so the file is taken away, or replaced by
// a directory, rather than chmod'ed.)
BOOST_AUTO_TEST_CASE(probeSaysTempFailWhenAFileCannotBeRead) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}a\n");
    test::writeFile(tmp.file("aliases"), "");
    PluginLoader loader(test::pluginDir());
    auto b = loader.load("passwd-file", "users",
                         {{"path", tmp.file("passwd")}, {"aliases", tmp.file("aliases")}, {"check_interval", "0"}});
    api::ProbeAnswer a = b->probe();
    BOOST_TEST((a.status == api::Status::Ok), a.detail);

    std::filesystem::rename(tmp.file("passwd"), tmp.file("passwd.away"));
    a = b->probe();
    BOOST_TEST((a.status == api::Status::TempFail));
    BOOST_TEST(a.detail.find("cannot open " + tmp.file("passwd")) != std::string::npos, a.detail);
    BOOST_TEST(a.detail.find("No such file") != std::string::npos, a.detail);
    // Logins still come from the last good copy: only readiness says the file is gone.
    BOOST_TEST((b->authenticate("alice@example.test", "a", "smtp", "").status == api::Status::Ok));

    std::filesystem::rename(tmp.file("passwd.away"), tmp.file("passwd"));
    BOOST_TEST((b->probe().status == api::Status::Ok));

    // The aliases file counts too; a directory in its place is not a readable file.
    std::filesystem::remove(tmp.file("aliases"));
    std::filesystem::create_directory(tmp.file("aliases"));
    a = b->probe();
    BOOST_TEST((a.status == api::Status::TempFail));
    BOOST_TEST(a.detail.find(tmp.file("aliases") + " is not a regular file") != std::string::npos, a.detail);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
