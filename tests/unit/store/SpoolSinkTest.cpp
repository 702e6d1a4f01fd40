#include "store/SpoolSink.h"

#include "StoreTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <csignal>
#include <sys/resource.h>
#include <sys/stat.h>

using namespace postern;
using namespace postern::store;
using namespace postern::store::test;

BOOST_AUTO_TEST_SUITE(spool_sink)

namespace {

struct Fixture {
    TempDir t;
    MaildirStore store{(t.path / "mail").string(), "host"};
    queue::OutboundQueue queue{(t.path / "queue").string(), {0, 1}};
    SpoolSink sink{store, queue};

    core::Envelope envelope(std::vector<std::string> local, std::vector<std::string> remote) {
        core::Envelope e;
        e.sessionId = "s1";
        e.sender = "bob@example.org";
        e.localMailboxes = std::move(local);
        e.remoteRecipients = std::move(remote);
        e.client.ip = Poco::Net::IPAddress("192.0.2.7");
        e.heloName = "client.example.org";
        e.authUser = "bob";
        return e;
    }
    fs::path mailDir(const std::string& mailbox, const char* sub) { return t.path / "mail" / mailbox / sub; }
    fs::path queueDir(const char* sub) { return t.path / "queue" / sub; }
};

const std::string Message = "From: bob@example.org\r\nSubject: test\r\n\r\nline one\r\n.dotted\r\n";
// A mailbox's copy: the Return-Path line of final delivery (RFC 5321 4.4), then the message.
const std::string Stored = "Return-Path: <bob@example.org>\r\n" + Message;

core::SinkResult writeAndCommit(core::MessageWriter& w, const std::string& data) {
    // In pieces, as a session would.
    for (std::size_t i = 0; i < data.size(); i += 7) BOOST_REQUIRE(w.write(data.data() + i, std::min<std::size_t>(7, data.size() - i)));
    return w.commit();
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(local_delivery_is_byte_exact_in_new, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({"example.org/alice"}, {}), st);
    BOOST_REQUIRE(w);
    BOOST_TEST((st == core::SinkStatus::Ok));
    auto r = writeAndCommit(*w, Message);
    BOOST_TEST((r.status == core::SinkStatus::Ok));
    BOOST_TEST(queue::OutboundQueue::isValidId(r.queueId));
    auto files = filesIn(mailDir("example.org/alice", "new"));
    BOOST_REQUIRE(files.size() == 1u);
    BOOST_TEST(slurp(files[0]) == Stored);
    BOOST_TEST(files[0].filename().string().ends_with(",S=" + std::to_string(Stored.size())));
    BOOST_TEST(modeOf(files[0]) == 0600u);
    BOOST_TEST(filesIn(mailDir("example.org/alice", "tmp")).empty());
    BOOST_TEST(queue.list().empty());
    w.reset();
    BOOST_TEST(filesIn(mailDir("example.org/alice", "new")).size() == 1u);  // destructor after commit keeps it
}

BOOST_FIXTURE_TEST_CASE(one_copy_linked_into_several_mailboxes, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({"alice", "carol", "dave"}, {}), st);
    BOOST_REQUIRE(w);
    BOOST_TEST((writeAndCommit(*w, Message).status == core::SinkStatus::Ok));
    ino_t inode = 0;
    for (const char* mb : {"alice", "carol", "dave"}) {
        auto files = filesIn(mailDir(mb, "new"));
        BOOST_REQUIRE(files.size() == 1u);
        BOOST_TEST(slurp(files[0]) == Stored);
        struct stat s{};
        ::stat(files[0].c_str(), &s);
        BOOST_TEST(s.st_nlink == 3u);  // the temp is gone, three links remain
        if (inode == 0) inode = s.st_ino;
        BOOST_TEST(s.st_ino == inode);
    }
}

BOOST_FIXTURE_TEST_CASE(remote_recipients_go_to_the_queue, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({"alice"}, {"x@example.net", "y@example.com"}), st);
    BOOST_REQUIRE(w);
    // Remote: the temp lives in the queue's incoming/.
    BOOST_TEST(filesIn(queueDir("incoming")).size() == 1u);
    auto r = writeAndCommit(*w, Message);
    BOOST_REQUIRE((r.status == core::SinkStatus::Ok));
    auto l = queue.list();
    BOOST_REQUIRE(l.size() == 1u);
    BOOST_TEST(l[0].envelope.id == r.queueId);
    BOOST_TEST(l[0].envelope.recipients == (std::vector<std::string>{"x@example.net", "y@example.com"}));
    BOOST_TEST(l[0].envelope.sender == "bob@example.org");
    BOOST_TEST(l[0].envelope.clientIp == "192.0.2.7");
    BOOST_TEST(l[0].envelope.authUser == "bob");
    BOOST_TEST(l[0].envelope.sessionId == "s1");
    BOOST_TEST(l[0].envelope.heloName == "client.example.org");
    BOOST_TEST(l[0].size == Message.size());
    BOOST_TEST(slurp(queue.dataPath(r.queueId)) == Message);
    BOOST_TEST(filesIn(queueDir("incoming")).empty());
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(remote_only_message_file_moves_into_the_queue, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({}, {"x@example.net"}), st);
    BOOST_REQUIRE(w);
    auto temp = filesIn(queueDir("incoming"));
    BOOST_REQUIRE(temp.size() == 1u);
    struct stat before{};
    BOOST_REQUIRE(::stat(temp[0].c_str(), &before) == 0);
    auto r = writeAndCommit(*w, Message);
    BOOST_REQUIRE((r.status == core::SinkStatus::Ok));
    w.reset();
    // The received file itself is the queue's data file (renamed, one link), nothing is left.
    struct stat after{};
    BOOST_REQUIRE(::stat(queue.dataPath(r.queueId).c_str(), &after) == 0);
    BOOST_TEST(after.st_ino == before.st_ino);
    BOOST_TEST(after.st_nlink == 1u);
    BOOST_TEST(slurp(queue.dataPath(r.queueId)) == Message);
    BOOST_TEST(filesIn(queueDir("incoming")).empty());
    BOOST_TEST(queue.list().size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(uncommitted_writer_leaves_nothing, Fixture) {
    {
        core::SinkStatus st;
        auto w = sink.open(envelope({"alice"}, {}), st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), Message.size()));
        BOOST_TEST(filesIn(mailDir("alice", "tmp")).size() == 1u);
    }
    {
        core::SinkStatus st;
        auto w = sink.open(envelope({"alice"}, {"x@example.net"}), st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), Message.size()));
    }
    BOOST_TEST(filesIn(mailDir("alice", "tmp")).empty());
    BOOST_TEST(filesIn(mailDir("alice", "new")).empty());
    BOOST_TEST(filesIn(queueDir("incoming")).empty());
    BOOST_TEST(filesIn(queueDir("data")).empty());
    BOOST_TEST(filesIn(queueDir("envelope")).empty());
}

BOOST_FIXTURE_TEST_CASE(queue_full_refuses_remote_but_not_local, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({}, {"x@example.net"}), st);
    BOOST_REQUIRE(w);
    BOOST_REQUIRE((writeAndCommit(*w, Message).status == core::SinkStatus::Ok));
    BOOST_REQUIRE(queue.isFull());  // limit is one message

    auto refused = sink.open(envelope({"alice"}, {"y@example.net"}), st);
    BOOST_TEST(!refused);
    BOOST_TEST((st == core::SinkStatus::QueueFull));
    BOOST_TEST(filesIn(queueDir("incoming")).empty());

    auto local = sink.open(envelope({"alice"}, {}), st);
    BOOST_TEST(local);
    BOOST_TEST((st == core::SinkStatus::Ok));

    // A bounce to a remote sender replaces the message it reports on: admitted, or a full
    // queue of failed messages could never empty itself.
    core::Envelope bounce = envelope({}, {"sender@example.net"});
    bounce.sender = "";
    bounce.failureReport = true;
    auto report = sink.open(bounce, st);
    BOOST_REQUIRE(report);
    BOOST_TEST((writeAndCommit(*report, Message).status == core::SinkStatus::Ok));
}

BOOST_FIXTURE_TEST_CASE(failure_in_second_mailbox_undoes_the_first, Fixture) {
    // "carol" cannot be a Maildir: its new/ is a regular file.
    fs::create_directories(t.path / "mail" / "carol");
    spit(mailDir("carol", "new"), "in the way");
    core::SinkStatus st;
    auto w = sink.open(envelope({"alice", "carol"}, {"x@example.net"}), st);
    BOOST_REQUIRE(w);
    auto r = writeAndCommit(*w, Message);
    BOOST_TEST((r.status == core::SinkStatus::TempFail));
    BOOST_TEST(filesIn(mailDir("alice", "new")).empty());
    BOOST_TEST(queue.list().empty());
    w.reset();
    BOOST_TEST(filesIn(queueDir("incoming")).empty());
}

BOOST_FIXTURE_TEST_CASE(commit_twice_fails_the_second_time, Fixture) {
    core::SinkStatus st;
    auto w = sink.open(envelope({"alice"}, {}), st);
    BOOST_REQUIRE(w);
    BOOST_REQUIRE((writeAndCommit(*w, Message).status == core::SinkStatus::Ok));
    BOOST_TEST((w->commit().status == core::SinkStatus::TempFail));
    BOOST_TEST(!w->write("x", 1));
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(bad_envelopes_are_tempfail, Fixture) {
    core::SinkStatus st = core::SinkStatus::Ok;
    BOOST_TEST(!sink.open(envelope({}, {}), st));
    BOOST_TEST((st == core::SinkStatus::TempFail));
    st = core::SinkStatus::Ok;
    BOOST_TEST(!sink.open(envelope({"../../etc"}, {}), st));
    BOOST_TEST((st == core::SinkStatus::TempFail));
}

BOOST_FIXTURE_TEST_CASE(large_message_through_the_buffer, Fixture) {
    std::string big;
    for (int i = 0; i < 20000; ++i) big += "line " + std::to_string(i) + " of a larger message body\r\n";
    core::SinkStatus st;
    auto w = sink.open(envelope({"alice"}, {"x@example.net"}), st);
    BOOST_REQUIRE(w);
    BOOST_REQUIRE(w->write(big.data(), 100));
    BOOST_REQUIRE(w->write(big.data() + 100, 200000));  // larger than the buffer
    BOOST_REQUIRE(w->write(big.data() + 200100, big.size() - 200100));
    auto r = w->commit();
    BOOST_REQUIRE((r.status == core::SinkStatus::Ok));
    // The mailbox's copy begins with Return-Path; the queue's copy is the message alone.
    BOOST_TEST(slurp(filesIn(mailDir("alice", "new")).front()) == "Return-Path: <bob@example.org>\r\n" + big);
    BOOST_TEST(slurp(queue.dataPath(r.queueId)) == big);
    // Neither the temp file nor the queue's copy is left where they were written.
    BOOST_TEST(filesIn(queueDir("incoming")).empty());
    BOOST_TEST(filesIn(mailDir("alice", "tmp")).empty());
}

BOOST_AUTO_TEST_CASE(write_error_is_sticky_and_commit_fails) {
    // Stands in for ENOSPC: with RLIMIT_FSIZE (and SIGXFSZ ignored) write(2) fails with
    // EFBIG once the temp file reaches the limit.
    TempDir t;
    MaildirStore store((t.path / "mail").string(), "host");
    queue::OutboundQueue q((t.path / "queue").string(), {});
    SpoolSink sink(store, q);
    core::Envelope e;
    e.localMailboxes = {"alice"};
    core::SinkStatus st;
    auto w = sink.open(e, st);
    BOOST_REQUIRE(w);
    struct rlimit old{};
    ::getrlimit(RLIMIT_FSIZE, &old);
    struct rlimit small = old;
    small.rlim_cur = 1000;
    auto oldHandler = std::signal(SIGXFSZ, SIG_IGN);
    ::setrlimit(RLIMIT_FSIZE, &small);
    std::string chunk(100000, 'x');
    bool first = w->write(chunk.data(), chunk.size());
    bool second = w->write("y", 1);
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, oldHandler);
    BOOST_TEST(!first);
    BOOST_TEST(!second);
    BOOST_TEST((w->commit().status == core::SinkStatus::TempFail));
    w.reset();
    BOOST_TEST(filesIn(t.path / "mail/alice/new").empty());
    BOOST_TEST(filesIn(t.path / "mail/alice/tmp").empty());
}

BOOST_AUTO_TEST_CASE(mail_root_on_another_file_system_gets_a_copy) {
    // The queue on the temp dir's file system, the mail root on /dev/shm (tmpfs): the
    // link into new/ fails with EXDEV and the Maildir tmp/ + rename path is taken.
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
        queue::OutboundQueue q((queueSide.path / "queue").string(), {});
        SpoolSink sink(store, q);
        core::Envelope e;
        e.localMailboxes = {"alice"};
        e.remoteRecipients = {"x@example.net"};
        core::SinkStatus st;
        auto w = sink.open(e, st);
        BOOST_REQUIRE(w);
        auto r = writeAndCommit(*w, Message);
        BOOST_TEST((r.status == core::SinkStatus::Ok));
        auto files = filesIn(mailRoot / "alice/new");
        BOOST_REQUIRE(files.size() == 1u);
        BOOST_TEST(slurp(files[0]) == "Return-Path: <>\r\n" + Message);  // also with a remote recipient
        BOOST_TEST(modeOf(files[0]) == 0600u);
        BOOST_TEST(filesIn(mailRoot / "alice/tmp").empty());
        BOOST_TEST(slurp(q.dataPath(r.queueId)) == Message);
    } else {
        BOOST_TEST_MESSAGE("/dev/shm on the same file system: skipped");
    }
    std::error_code ec;
    fs::remove_all(mailRoot, ec);
}

BOOST_AUTO_TEST_SUITE_END()
