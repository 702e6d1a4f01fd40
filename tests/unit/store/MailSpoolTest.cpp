// The server's spool (<mail_root>/.postern-spool/<process>/): deliveries in progress live
// there, not in a user's Maildir tmp/; a start clears what dead processes left; Maildir tmp/
// leftovers older than the cleanup age go when the mailbox is opened.
#include "store/MailSpool.h"
#include "store/SpoolSink.h"

#include "StoreTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

using namespace postern;
using namespace postern::store;
using namespace postern::store::test;

BOOST_AUTO_TEST_SUITE(mail_spool)

namespace {

const std::string Message = "From: bob@example.org\r\nSubject: spool\r\n\r\nbody\r\n";
// A mailbox's copy: the Return-Path line of final delivery (RFC 5321 4.4), then the message.
const std::string Stored = "Return-Path: <bob@example.org>\r\n" + Message;

core::Envelope envelope(std::vector<std::string> local, std::vector<std::string> remote = {}) {
    core::Envelope e;
    e.sessionId = "s1";
    e.sender = "bob@example.org";
    e.localMailboxes = std::move(local);
    e.remoteRecipients = std::move(remote);
    return e;
}

void setAge(const fs::path& p, long seconds) {
    struct timeval tv[2];
    ::gettimeofday(&tv[0], nullptr);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    BOOST_REQUIRE(::utimes(p.c_str(), tv) == 0);
}

std::vector<std::string> namesIn(const fs::path& dir) {
    std::vector<std::string> out;
    for (auto& p : filesIn(dir)) out.push_back(p.filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(start_makes_a_locked_directory_and_the_destructor_removes_it) {
    TempDir t;
    std::string own;
    {
        MailSpool spool((t.path / "mail").string(), "node/1");
        std::size_t removed = 99;
        BOOST_REQUIRE(spool.start(removed));
        BOOST_TEST(removed == 0u);
        own = spool.directory();
        BOOST_TEST(fs::path(own).parent_path() == t.path / "mail" / ".postern-spool");
        BOOST_TEST(fs::path(own).filename().string().starts_with("node_1-"));
        BOOST_TEST(modeOf(own) == 0700u);
        BOOST_TEST(namesIn(own) == std::vector<std::string>{"lock"});
        // The lock is held: nobody else gets it.
        int fd = ::open((own + "/lock").c_str(), O_RDWR);
        BOOST_REQUIRE(fd >= 0);
        BOOST_TEST(::flock(fd, LOCK_EX | LOCK_NB) != 0);
        ::close(fd);
        struct stat st{};
        ::stat(own.c_str(), &st);
        BOOST_TEST(spool.device() == st.st_dev);
    }
    BOOST_TEST(!fs::exists(own));
}

BOOST_AUTO_TEST_CASE(start_removes_dead_processes_directories_but_not_live_ones) {
    TempDir t;
    fs::path root = t.path / "mail" / ".postern-spool";
    // A crashed process: its directory with an unlocked lock file and two partial messages.
    fs::create_directories(root / "host-111-5-0");
    spit(root / "host-111-5-0" / "lock", "");
    spit(root / "host-111-5-0" / "1.M1P111Q1.host,S=0.part", "half a mess");
    spit(root / "host-111-5-0" / "1.M1P111Q2.host,S=0.part", "");
    // A stray file, and a directory without lock that is old (died before locking).
    spit(root / "stray", "x");
    fs::create_directories(root / "host-222-5-0");
    setAge(root / "host-222-5-0", 3600);
    // A process that is starting right now (no lock yet, just made): kept.
    fs::create_directories(root / "host-333-5-0");

    MailSpool live((t.path / "mail").string(), "host");
    std::size_t removed = 0;
    BOOST_REQUIRE(live.start(removed));
    BOOST_TEST(removed == 3u);  // two partial messages and the stray file
    BOOST_TEST(!fs::exists(root / "host-111-5-0"));
    BOOST_TEST(!fs::exists(root / "host-222-5-0"));
    BOOST_TEST(!fs::exists(root / "stray"));
    BOOST_TEST(fs::exists(root / "host-333-5-0"));

    // A second process (here: a second spool, with its own open file description) leaves
    // the first one's directory alone, with a message in progress in it.
    spit(fs::path(live.directory()) / "in-progress.part", "data");
    MailSpool second((t.path / "mail").string(), "host");
    BOOST_REQUIRE(second.start(removed));
    BOOST_TEST(removed == 0u);
    BOOST_TEST(fs::exists(fs::path(live.directory()) / "in-progress.part"));
    BOOST_TEST(second.directory() != live.directory());
}

// Review finding: where the shared mail root keeps flock(2) per host (NFS nolock,
// local_lock=flock), another node's live directory has a free lock here. Removing it made
// every local delivery on that node fail until its restart. Another writer's directories
// are now left alone unless they are a week old; this writer's dead ones go at once.
BOOST_AUTO_TEST_CASE(other_nodes_directories_are_kept_unless_a_week_old) {
    TempDir t;
    fs::path root = t.path / "mail" / ".postern-spool";
    for (const char* d : {"nodeb-10-5-0", "nodeb-11-5-0", "nodea-12-5-0"}) {
        fs::create_directories(root / d);
        spit(root / d / "lock", "");  // nobody holds it (as seen from here)
        spit(root / d / "1.part", "in progress");
    }
    setAge(root / "nodeb-11-5-0", 8 * 24 * 3600);  // a node gone for good
    MailSpool spool((t.path / "mail").string(), "nodea");
    std::size_t removed = 0;
    BOOST_REQUIRE(spool.start(removed));
    BOOST_TEST(fs::exists(root / "nodeb-10-5-0" / "1.part"));  // another node's: kept
    BOOST_TEST(!fs::exists(root / "nodeb-11-5-0"));             // a week old: removed
    BOOST_TEST(!fs::exists(root / "nodea-12-5-0"));             // this writer's dead one
    BOOST_TEST(removed == 2u);
}

BOOST_AUTO_TEST_CASE(local_delivery_writes_in_the_spool_and_leaves_nothing_behind) {
    TempDir t;
    MaildirStore store((t.path / "mail").string(), "host");
    MailSpool spool((t.path / "mail").string(), "host");
    std::size_t removed = 0;
    BOOST_REQUIRE(spool.start(removed));
    store.setSpool(&spool);
    queue::OutboundQueue q((t.path / "queue").string(), {});
    SpoolSink sink(store, q);
    fs::path alice = t.path / "mail" / "alice";
    {
        core::SinkStatus st;
        auto w = sink.open(envelope({"alice", "carol"}), st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), Message.size()));
        BOOST_TEST(filesIn(spool.directory()).size() == 2u);  // lock + the message being received
        BOOST_TEST(filesIn(alice / "tmp").empty());
        BOOST_REQUIRE((w->commit().status == core::SinkStatus::Ok));
        BOOST_TEST(namesIn(spool.directory()) == std::vector<std::string>{"lock"});
    }
    BOOST_REQUIRE(filesIn(alice / "new").size() == 1u);
    BOOST_TEST(slurp(filesIn(alice / "new")[0]) == Stored);
    BOOST_TEST(filesIn(t.path / "mail" / "carol" / "new").size() == 1u);
    {
        // Failed (never committed) delivery: nothing anywhere.
        core::SinkStatus st;
        auto w = sink.open(envelope({"alice"}), st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), 10));
    }
    BOOST_TEST(namesIn(spool.directory()) == std::vector<std::string>{"lock"});
    BOOST_TEST(filesIn(alice / "tmp").empty());
    BOOST_TEST(filesIn(alice / "new").size() == 1u);
}

BOOST_AUTO_TEST_CASE(queue_on_another_file_system_copies_through_the_spool_not_tmp) {
    TempDir queueSide;
    std::string shmTemplate = "/dev/shm/postern-store-XXXXXX";
    if (!fs::is_directory("/dev/shm") || !::mkdtemp(shmTemplate.data())) {
        BOOST_TEST_MESSAGE("no /dev/shm: skipped");
        return;
    }
    fs::path mailRoot = shmTemplate;
    struct stat a{}, b{};
    ::stat(queueSide.path.c_str(), &a);
    ::stat(mailRoot.c_str(), &b);
    if (a.st_dev != b.st_dev) {
        MaildirStore store(mailRoot.string(), "host");
        MailSpool spool(mailRoot.string(), "host");
        std::size_t removed = 0;
        BOOST_REQUIRE(spool.start(removed));
        store.setSpool(&spool);
        queue::OutboundQueue q((queueSide.path / "queue").string(), {});
        SpoolSink sink(store, q);
        core::SinkStatus st;
        auto w = sink.open(envelope({"alice", "carol"}, {"x@example.net"}), st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), Message.size()));
        BOOST_REQUIRE((w->commit().status == core::SinkStatus::Ok));
        for (const char* mb : {"alice", "carol"}) {
            auto files = filesIn(mailRoot / mb / "new");
            BOOST_REQUIRE(files.size() == 1u);
            BOOST_TEST(slurp(files[0]) == Stored);  // a mailbox's copy has Return-Path, remote recipient or not
            BOOST_TEST(filesIn(mailRoot / mb / "tmp").empty());
        }
        BOOST_TEST(namesIn(spool.directory()) == std::vector<std::string>{"lock"});
    } else {
        BOOST_TEST_MESSAGE("/dev/shm on the same file system: skipped");
    }
    std::error_code ec;
    fs::remove_all(mailRoot, ec);
}

BOOST_AUTO_TEST_CASE(old_tmp_files_are_removed_when_the_mailbox_is_opened) {
    TempDir t;
    MaildirStore store((t.path / "mail").string(), "host");
    fs::path tmp = t.path / "mail" / "alice" / "tmp";
    BOOST_REQUIRE(MaildirStore::ensureMaildir((t.path / "mail" / "alice").string()));
    spit(tmp / "old.part", "left by a crash");
    setAge(tmp / "old.part", 37 * 3600);
    spit(tmp / "young.part", "still being written");
    setAge(tmp / "young.part", 3600);
    core::MaildropPtr drop;
    // Cleanup off (0): nothing goes.
    BOOST_REQUIRE((store.open("alice", drop) == core::MaildropStatus::Ok));
    drop.reset();
    BOOST_TEST(filesIn(tmp).size() == 2u);
    store.setTmpCleanupAge(std::chrono::hours(36));
    BOOST_REQUIRE((store.open("alice", drop) == core::MaildropStatus::Ok));
    drop.reset();
    BOOST_TEST(namesIn(tmp) == std::vector<std::string>{"young.part"});
}

BOOST_AUTO_TEST_CASE(the_spool_is_not_a_mailbox) {
    MaildirStore store("/srv/mail", "host");
    BOOST_TEST(!store.maildirPath(".postern-spool"));
    BOOST_TEST(!store.maildirPath(".postern-spool/host-1-1-0"));
    BOOST_TEST(store.maildirPath("example.org/.postern-spool").has_value());  // only the top level is ours
}

BOOST_AUTO_TEST_SUITE_END()
