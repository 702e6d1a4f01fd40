// A single node's account security state file: round trip (odd bytes in every field),
// damaged input refused, atomic replace, a store that keeps holding across a "restart",
// bounds applied to a loaded file, a corrupt file kept aside, an unreadable file refused,
// recording from many threads while flushes write the file.
#include "abuse/AccountSecurity.h"
#include "abuse/AccountSecurityStateFile.h"
#include "abuse/AccountSecurityStore.h"

#include <boost/test/unit_test.hpp>

#include <Poco/File.h>
#include <Poco/Timespan.h>
#include <Poco/Timestamp.h>
#include <Poco/FileStream.h>
#include <Poco/Path.h>
#include <Poco/TemporaryFile.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace postern;
using namespace postern::abuse;
using namespace std::chrono_literals;

namespace {

const core::TimePoint T0 = core::TimePoint(1700000000s);

struct TempDir {
    std::string path;
    TempDir() : path(Poco::TemporaryFile::tempName()) { Poco::File(path).createDirectories(); }
    ~TempDir() {
        try {
            Poco::File(path).remove(true);
        } catch (...) {
        }
    }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void spit(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

AccountSecurityState sample() {
    AccountSecurityState s;
    s.flags["ann@example.test"] = AccountFlag{"ann@example.test", "ips", 21, 20};
    auto& ann = s.accounts["ann@example.test"];
    ann.ips["192.0.2.1"] = T0;
    ann.ips["2001:db8::1"] = T0 + 1500ms;
    ann.counts.push_back({T0, AccountCounts{3, 4}});
    ann.logins.push_back({T0, "192.0.2.1", "smtp", "PLAIN", "TLSv1.3", "ok"});
    ann.logins.push_back({T0 + 1s, "192.0.2.9", "pop3", "USER", "", "fail"});
    // A name a client gave: spaces, '%', '-', a newline, a non-ASCII byte.
    auto& odd = s.accounts[std::string("we ird%-\n\xc3\xa9")];
    odd.logins.push_back({T0, "-", "smtp", "LOGIN", "yes", "blocked"});
    return s;
}

AccountSecuritySettings quiet() {
    AccountSecuritySettings s;
    s.maxIps = 0;
    s.maxNetworks = 0;
    s.maxRemoteRejected = 0;
    s.maxBounces = 0;
    s.loginLogMaxEntries = 1000000;
    return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(account_security_state_file)

BOOST_AUTO_TEST_CASE(round_trip_keeps_every_field) {
    const AccountSecurityState s = sample();
    const std::string text = formatAccountSecurityState(s);
    BOOST_TEST(text.rfind("postern-account-security 1\n", 0) == 0);
    BOOST_TEST(text.find("\nend 7\n") != std::string::npos);
    // One record per line: the newline in the name is escaped.
    BOOST_TEST(text.find("we%20ird%25-%0A\xc3\xa9") != std::string::npos);
    BOOST_TEST((parseAccountSecurityState(text) == s));
    BOOST_TEST((parseAccountSecurityState(formatAccountSecurityState({})) == AccountSecurityState{}));
}

BOOST_AUTO_TEST_CASE(damaged_files_are_refused) {
    const std::string good = formatAccountSecurityState(sample());
    const std::vector<std::string> bad = {
        "",
        good.substr(0, good.size() - 1),                        // no final newline
        good.substr(0, good.find("end ")),                      // cut before the end record
        good.substr(0, good.find('\n', good.find("login")) + 1),  // cut at a line boundary
        "postern-account-security 2\nend 0\n",                  // unknown version
        "something else 1\nend 0\n",
        "postern-account-security 1\nend 1\n",                  // wrong count
        "postern-account-security 1\nend 0\nend 0\n",           // data after the end
        "postern-account-security 1\nflag a ips 1\nend 1\n",    // a field short
        "postern-account-security 1\nflag a ips x 1\nend 1\n",  // not a number
        "postern-account-security 1\nflag a ips -1 1\nend 1\n",
        "postern-account-security 1\nip a 192.0.2.1 99999999999999999999\nend 1\n",  // overflow
        "postern-account-security 1\nip a 192.0.2.1 1 \nend 1\n",  // trailing space
        "postern-account-security 1\nip a  1\nend 1\n",           // empty field
        "postern-account-security 1\nip - 192.0.2.1 1\nend 1\n",  // empty account
        "postern-account-security 1\nlogin a 1 1.2.3.4 smtp PLAIN %G0 ok\nend 1\n",  // bad escape
        "postern-account-security 1\nlogin a 1 1.2.3.4 smtp PLAIN %2 ok\nend 1\n",
        "postern-account-security 1\nlogin a 1 1.2.3.4 smtp\tPLAIN - ok\nend 1\n",  // control byte
        "postern-account-security 1\nwhat a\nend 1\n",
        "postern-account-security 1\nflag a ips 1 1\nflag a ips 1 1\nend 2\n",  // flagged twice
    };
    for (const auto& text : bad) {
        BOOST_TEST_CONTEXT(text) { BOOST_CHECK_THROW(parseAccountSecurityState(text), StateFileError); }
    }
}

BOOST_AUTO_TEST_CASE(atomic_write_replaces_and_leaves_no_temporary) {
    TempDir d;
    const std::string path = d.file("account-security.state");
    writeFileAtomically(path, "one\n");
    writeFileAtomically(path, "two\n");
    BOOST_TEST(slurp(path) == "two\n");
    BOOST_TEST(!Poco::File(path + ".tmp").exists());
    BOOST_CHECK_THROW(writeFileAtomically(d.file("missing/dir/x"), "x"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(flags_counters_and_log_survive_a_restart) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;
    s.statePath = path;
    {
        MemoryAccountSecurityStore store(path);
        AccountSecurity security(s, store, {}, [] { return T0; });
        security.recordLogin({T0, "ann@example.test", "192.0.2.1", "smtp", "PLAIN", "TLSv1.3", "ok"});
        security.recordLogin({T0, "ann@example.test", "192.0.2.2", "pop3", "USER", "", "ok"});
        security.recordLogin({T0, "ann@example.test", "192.0.2.3", "pop3", "USER", "", "fail"});
        BOOST_TEST(security.flushNow());
        BOOST_TEST(security.isHeld("ann@example.test"));
    }
    // Nothing changed: no rewrite (the file keeps its inode).
    struct stat before{};
    BOOST_REQUIRE(::stat(path.c_str(), &before) == 0);
    {
        MemoryAccountSecurityStore store(path);
        AccountSecurity security(s, store, {}, [] { return T0 + 1s; });
        BOOST_TEST(security.flushNow());
        BOOST_TEST(security.isHeld("ann@example.test"));  // held again after the restart
        auto log = store.logins("ann@example.test", 0);
        BOOST_REQUIRE(log.size() == 3u);
        BOOST_TEST(log[0].result == "fail");
        BOOST_TEST(store.totals("ann@example.test", T0 + 1s, 1h).ips == 2u);
    }
    struct stat after{};
    BOOST_REQUIRE(::stat(path.c_str(), &after) == 0);
    BOOST_TEST(before.st_ino == after.st_ino);
    // The release request is applied, persisted, then deleted; the next start holds nobody.
    const std::string releaseDir = d.file("account-release");
    Poco::File(releaseDir).createDirectories();
    s.releaseDir = releaseDir;
    {
        MemoryAccountSecurityStore store(path);
        AccountSecurity security(s, store, {}, [] { return T0 + 2s; });
        spit(releaseDir + "/ann@example.test", "release\n");
        BOOST_TEST(security.flushNow());
        BOOST_TEST(!security.isHeld("ann@example.test"));
        BOOST_TEST(!Poco::File(releaseDir + "/ann@example.test").exists());
    }
    MemoryAccountSecurityStore store(path);
    BOOST_TEST(store.flagged()->empty());
    BOOST_TEST(store.logins("ann@example.test", 0).size() == 3u);  // the log stays
}

// The state file of many accounts is large: it is rewritten at most once per write interval,
// while the flags go at once to their own small file, which also keeps the holds when the
// state file is damaged (it was renamed aside and every hold was lost: review finding).
BOOST_AUTO_TEST_CASE(flags_are_written_at_once_and_the_state_at_its_interval) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    AccountSecuritySettings s = quiet();
    s.maxIps = 1;
    s.statePath = path;
    {
        MemoryAccountSecurityStore store(path);
        store.setWriteInterval(1h);
        AccountSecurity security(s, store, {}, [] { return T0; });
        security.recordLogin({T0, "bob@example.test", "192.0.2.1", "smtp", "PLAIN", "", "ok"});
        BOOST_TEST(security.flushNow());  // the first write
        BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.count("bob@example.test") == 1u);
        security.recordLogin({T0, "ann@example.test", "192.0.2.1", "smtp", "PLAIN", "", "ok"});
        security.recordLogin({T0, "ann@example.test", "192.0.2.2", "smtp", "PLAIN", "", "ok"});
        BOOST_TEST(security.flushNow());
        BOOST_TEST(security.isHeld("ann@example.test"));
        // Within the interval: the state file is as before, the flag is in the flags file.
        BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.count("ann@example.test") == 0u);
        BOOST_TEST(parseAccountSecurityState(slurp(path + ".flags")).flags.count("ann@example.test") == 1u);
    }
    {
        // A crash here: the restart holds ann (from the flags file); a damaged state file
        // loses the login log, not the hold.
        MemoryAccountSecurityStore restarted(path);
        BOOST_TEST(restarted.flagged()->size() == 1u);
        spit(path, "postern-account-security 1\ngarbage\n");
        MemoryAccountSecurityStore damaged(path);
        BOOST_TEST((*damaged.flagged() == std::vector<std::string>{"ann@example.test"}));
        BOOST_TEST(Poco::File(path + ".corrupt").exists());
        // A release is in the flags file at once: a state file written before it (within the
        // write interval) that still names the flag does not bring it back. (Its mtime is set
        // back: written after the flags file, the newer state file wins by design, and the
        // test passed only when both writes fell in one tick of the file system's clock.)
        AccountSecurity security(s, damaged, {}, [] { return T0 + 1s; });
        BOOST_TEST(damaged.release("ann@example.test"));
        BOOST_TEST(damaged.persist());
        AccountSecurityState stale;
        stale.flags["ann@example.test"] = AccountFlag{"ann@example.test", "ips", 2, 1};
        writeFileAtomically(path, formatAccountSecurityState(stale));
        Poco::File(path).setLastModified(Poco::Timestamp() - Poco::Timespan(60, 0));
        MemoryAccountSecurityStore again(path);
        BOOST_TEST(again.flagged()->empty());
    }
    {
        // A stop writes the state file whatever the interval says (a first write is made,
        // so the interval holds back the next one).
        MemoryAccountSecurityStore store(path);
        store.setWriteInterval(1h);
        AccountSecurity security(s, store, {}, [] { return T0 + 2s; });
        security.recordLogin({T0 + 2s, "dan@example.test", "192.0.2.1", "smtp", "PLAIN", "", "ok"});
        BOOST_TEST(security.flushNow());
        BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.count("dan@example.test") == 1u);
        security.recordLogin({T0 + 2s, "cy@example.test", "192.0.2.1", "smtp", "PLAIN", "", "ok"});
        BOOST_TEST(security.flushNow());
        BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.count("cy@example.test") == 0u);
        security.start();
        security.stop();
        BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.count("cy@example.test") == 1u);
    }
}

// The newer of the two files has the current flags; a release reaches the state file at once
// (its old IPs would flag the account again after a crash); a damaged flags file is set aside.
BOOST_AUTO_TEST_CASE(the_newer_file_decides_and_a_release_is_written_at_once) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    AccountSecurityState flagged;
    flagged.flags["ann@example.test"] = AccountFlag{"ann@example.test", "ips", 3, 2};
    writeFileAtomically(path + ".flags", formatAccountSecurityState(flagged));
    std::this_thread::sleep_for(10ms);
    // A state file written after it (by an older release, which writes no flags file) wins.
    AccountSecurityState newer = flagged;
    newer.flags["bob@example.test"] = AccountFlag{"bob@example.test", "ips", 3, 2};
    writeFileAtomically(path, formatAccountSecurityState(newer));
    {
        MemoryAccountSecurityStore store(path);
        BOOST_TEST(store.flagged()->size() == 2u);
        store.setWriteInterval(1h);
        BOOST_TEST(store.persist());  // the flags file again (both flags)
        BOOST_TEST(store.release("bob@example.test"));
        BOOST_TEST(store.persist());
        BOOST_TEST(parseAccountSecurityState(slurp(path)).flags.count("bob@example.test") == 0u);  // not a minute later
    }
    spit(path + ".flags", "postern-account-security 1\nflag cut");
    MemoryAccountSecurityStore store(path);
    BOOST_TEST((*store.flagged() == std::vector<std::string>{"ann@example.test"}));  // the state file's
    BOOST_TEST(Poco::File(path + ".flags.corrupt").exists());
}

BOOST_AUTO_TEST_CASE(a_loaded_file_is_pruned_to_the_current_bounds) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    AccountSecurityState st;
    auto& a = st.accounts["ann@example.test"];
    for (int i = 0; i < 10; ++i)
        a.logins.push_back({T0 + std::chrono::seconds(i), "192.0.2.1", "smtp", "PLAIN", "", "ok"});
    a.ips["192.0.2.1"] = T0 - 2h;  // past the window
    a.counts.push_back({T0 - 2h, AccountCounts{1, 1}});
    st.accounts["old@example.test"].logins.push_back({T0 - 24h * 40, "192.0.2.1", "smtp", "PLAIN", "", "ok"});
    writeFileAtomically(path, formatAccountSecurityState(st));
    MemoryAccountSecurityStore store(path);
    AccountSecuritySettings s = quiet();
    s.loginLogMaxEntries = 4;
    BOOST_TEST(store.prune(T0 + 10s, s));
    BOOST_TEST(store.persist());
    const AccountSecurityState back = parseAccountSecurityState(slurp(path));
    BOOST_REQUIRE(back.accounts.size() == 1u);
    const auto& ann = back.accounts.at("ann@example.test");
    BOOST_TEST(ann.logins.size() == 4u);
    BOOST_TEST((ann.logins.front().at == T0 + 6s));
    BOOST_TEST(ann.ips.empty());
    BOOST_TEST(ann.counts.empty());
}

BOOST_AUTO_TEST_CASE(a_corrupt_file_is_kept_aside_and_the_store_starts_empty) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    const std::string good = formatAccountSecurityState(sample());
    spit(path, good.substr(0, good.size() / 2));
    MemoryAccountSecurityStore store(path);
    BOOST_TEST(store.flagged()->empty());
    BOOST_TEST(Poco::File(path + ".corrupt").exists());
    BOOST_TEST(slurp(path + ".corrupt") == good.substr(0, good.size() / 2));
    BOOST_TEST(store.persist());  // a valid (empty) file replaces it at the first flush
    BOOST_TEST((parseAccountSecurityState(slurp(path)) == AccountSecurityState{}));
}

BOOST_AUTO_TEST_CASE(an_unreadable_file_refuses_to_start) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    // A directory in its place: open() succeeds, read() fails with EISDIR (also as root,
    // where a mode 000 file would still be readable).
    Poco::File(path).createDirectories();
    BOOST_CHECK_THROW(MemoryAccountSecurityStore store(path), std::runtime_error);
    BOOST_CHECK_THROW(loadAccountSecurityState(path), std::runtime_error);
    BOOST_TEST((loadAccountSecurityState(d.file("none")).status == StateFileLoad::Status::Missing));
}

BOOST_AUTO_TEST_CASE(a_failing_write_keeps_the_state_for_the_next_flush) {
    TempDir d;
    const std::string dir = d.file("gone");
    Poco::File(dir).createDirectories();
    const std::string path = dir + "/" + AccountSecurityStateName;
    MemoryAccountSecurityStore store(path);
    AccountSecuritySettings s = quiet();
    AccountSecurity security(s, store, {}, [] { return T0; });
    Poco::File(dir).remove(true);
    security.recordLogin({T0, "ann@example.test", "192.0.2.1", "smtp", "PLAIN", "", "ok"});
    BOOST_TEST(!security.flushNow());
    Poco::File(dir).createDirectories();
    BOOST_TEST(security.flushNow());  // nothing new recorded: written because still dirty
    BOOST_TEST(parseAccountSecurityState(slurp(path)).accounts.at("ann@example.test").logins.size() == 1u);
}

BOOST_AUTO_TEST_CASE(recording_from_many_threads_while_flushing_to_the_file) {
    TempDir d;
    const std::string path = d.file(AccountSecurityStateName);
    MemoryAccountSecurityStore store(path);
    AccountSecuritySettings s = quiet();
    s.flushInterval = 1ms;
    AccountSecurity security(s, store);
    security.start();
    constexpr int Threads = 4, Each = 500;
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < Each; ++i)
                security.recordLogin({std::chrono::system_clock::now(), "u" + std::to_string(t) + "@example.test",
                                      "192.0.2." + std::to_string(i % 200 + 1), "smtp", "PLAIN", "", "ok"});
        });
    // Meanwhile every file written is complete.
    for (int i = 0; i < 50; ++i) {
        auto loaded = loadAccountSecurityState(path);
        BOOST_TEST((loaded.status != StateFileLoad::Status::Corrupt));
        std::this_thread::sleep_for(1ms);
    }
    for (auto& t : threads) t.join();
    security.stop();
    const AccountSecurityState back = parseAccountSecurityState(slurp(path));
    BOOST_REQUIRE(back.accounts.size() == static_cast<std::size_t>(Threads));
    for (const auto& [user, a] : back.accounts) BOOST_TEST(a.logins.size() == static_cast<std::size_t>(Each));
    BOOST_TEST(back.accounts.size() == store.snapshot().accounts.size());
}

BOOST_AUTO_TEST_SUITE_END()
