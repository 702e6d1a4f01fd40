// SpoolSink with a GroupCommit: two shared barriers per local message (data, then links)
// behind one wait,
// failures fail the message with nothing left in new/, remote mail keeps its own fsyncs.
#include "store/SpoolSink.h"

#include "StoreTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <thread>
#include <vector>

using namespace postern;
using namespace postern::store;
using namespace postern::store::test;

BOOST_AUTO_TEST_SUITE(spool_sink_group_commit)

namespace {

const std::string Message = "From: bob@example.org\r\nSubject: grouped\r\n\r\nbody\r\n";
// A mailbox's copy: the Return-Path line of final delivery (RFC 5321 4.4), then the message.
const std::string Stored = "Return-Path: <bob@example.org>\r\n" + Message;

struct Fixture {
    TempDir t;
    MaildirStore store{(t.path / "mail").string(), "host"};
    queue::OutboundQueue queue{(t.path / "queue").string(), {0, 0}};
    SpoolSink sink{store, queue};
    std::atomic<int> runs{0};
    std::atomic<int> failOn{0};  // the n-th operation fails with EIO (0 = none)
    // Stands in for syncfs, with failure injection; the data path is otherwise real.
    GroupCommit gc{[this] {
        int n = ++runs;
        if (n == failOn.load()) return EIO;
        return ::syncfs(dirFd) == 0 ? 0 : errno;
    }};
    int dirFd = -1;

    Fixture() {
        dirFd = ::open(t.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st{};
        BOOST_REQUIRE(::stat(t.path.c_str(), &st) == 0);
        sink.setGroupCommit(&gc, st.st_dev);
    }
    ~Fixture() { ::close(dirFd); }

    core::Envelope envelope(std::vector<std::string> local, std::vector<std::string> remote = {}) {
        core::Envelope e;
        e.sessionId = "s1";
        e.sender = "bob@example.org";
        e.localMailboxes = std::move(local);
        e.remoteRecipients = std::move(remote);
        e.client.ip = Poco::Net::IPAddress("192.0.2.7");
        e.heloName = "client.example.org";
        return e;
    }
    fs::path mailDir(const std::string& mailbox, const char* sub) { return t.path / "mail" / mailbox / sub; }

    core::SinkResult deliver(const core::Envelope& e, core::MessageWriterPtr* keep = nullptr) {
        core::SinkStatus st;
        auto w = sink.open(e, st);
        BOOST_REQUIRE(w);
        BOOST_REQUIRE(w->write(Message.data(), Message.size()));
        auto r = w->commit();
        if (keep) *keep = std::move(w);
        return r;
    }
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(local_message_waits_once_for_two_shared_syncs, Fixture) {
    auto r = deliver(envelope({"alice", "carol"}));
    BOOST_TEST((r.status == core::SinkStatus::Ok));
    for (const char* mb : {"alice", "carol"}) {
        auto files = filesIn(mailDir(mb, "new"));
        BOOST_REQUIRE(files.size() == 1u);
        BOOST_TEST(slurp(files[0]) == Stored);
    }
    // One barrier for the data, one for all the links -- not one per mailbox -- and the
    // session waits once for both.
    BOOST_TEST(gc.stats().syncs == 2u);
    BOOST_TEST(gc.stats().waiters == 1u);
    BOOST_TEST(filesIn(mailDir("alice", "tmp")).empty());
}

BOOST_AUTO_TEST_CASE(no_name_in_new_before_the_data_barrier_and_links_before_the_second) {
    // What the barrier sees when it runs: phase 1 must find new/ still empty (the data is
    // made durable before any name of it can be), phase 2 must find the link (it makes it durable).
    TempDir t;
    MaildirStore store{(t.path / "mail").string(), "host"};
    queue::OutboundQueue queue{(t.path / "queue").string(), {0, 0}};
    SpoolSink sink{store, queue};
    std::vector<std::size_t> seen;
    GroupCommit gc{[&] {
        seen.push_back(filesIn(t.path / "mail" / "alice" / "new").size());
        return 0;
    }};
    struct stat st{};
    BOOST_REQUIRE(::stat(t.path.c_str(), &st) == 0);
    sink.setGroupCommit(&gc, st.st_dev);
    core::Envelope e;
    e.sessionId = "s1";
    e.sender = "bob@example.org";
    e.localMailboxes = {"alice"};
    core::SinkStatus status;
    auto w = sink.open(e, status);
    BOOST_REQUIRE(w);
    BOOST_REQUIRE(w->write(Message.data(), Message.size()));
    BOOST_TEST((w->commit().status == core::SinkStatus::Ok));
    BOOST_REQUIRE(seen.size() == 2u);
    BOOST_TEST(seen[0] == 0u);
    BOOST_TEST(seen[1] == 1u);
}

BOOST_FIXTURE_TEST_CASE(failed_data_sync_fails_the_message_and_publishes_nothing, Fixture) {
    failOn = 1;
    core::MessageWriterPtr w;
    auto r = deliver(envelope({"alice"}), &w);
    BOOST_TEST((r.status == core::SinkStatus::TempFail));
    BOOST_TEST(filesIn(mailDir("alice", "new")).empty());  // never linked
    w.reset();
    BOOST_TEST(filesIn(mailDir("alice", "tmp")).empty());  // temp file removed
    // The next message gets a fresh barrier and goes through.
    BOOST_TEST((deliver(envelope({"alice"})).status == core::SinkStatus::Ok));
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(failed_link_sync_removes_every_placed_copy, Fixture) {
    failOn = 2;  // the data barrier succeeds, the one for the links fails
    core::MessageWriterPtr w;
    auto r = deliver(envelope({"alice", "carol"}), &w);
    BOOST_TEST((r.status == core::SinkStatus::TempFail));
    BOOST_TEST(filesIn(mailDir("alice", "new")).empty());
    BOOST_TEST(filesIn(mailDir("carol", "new")).empty());
    w.reset();
    BOOST_TEST(filesIn(mailDir("alice", "tmp")).empty());
}

BOOST_FIXTURE_TEST_CASE(failed_link_in_the_step_removes_the_links_already_made, Fixture) {
    // carol's Maildir cannot be made (a file is in the way): the step fails after alice's
    // link; the message is refused and alice's copy is gone. The next message goes through.
    fs::create_directories(t.path / "mail");
    spit(t.path / "mail" / "carol", "not a directory");
    core::MessageWriterPtr w;
    auto r = deliver(envelope({"alice", "carol"}), &w);
    BOOST_TEST((r.status == core::SinkStatus::TempFail));
    BOOST_TEST(filesIn(mailDir("alice", "new")).empty());
    BOOST_TEST(gc.stats().syncs == 2u);  // the batch ran both syncs; the step failed in between
    w.reset();
    BOOST_TEST((deliver(envelope({"alice"})).status == core::SinkStatus::Ok));
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(remote_recipients_keep_per_message_fsyncs, Fixture) {
    auto r = deliver(envelope({"alice"}, {"x@example.net"}));
    BOOST_TEST((r.status == core::SinkStatus::Ok));
    BOOST_TEST(queue.list().size() == 1u);
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
    BOOST_TEST(gc.stats().waiters == 0u);
}

BOOST_FIXTURE_TEST_CASE(other_file_system_than_the_committer_keeps_per_message_fsyncs, Fixture) {
    sink.setGroupCommit(&gc, static_cast<dev_t>(-1));  // no temp file lives on this "device"
    BOOST_TEST((deliver(envelope({"alice"})).status == core::SinkStatus::Ok));
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() == 1u);
    BOOST_TEST(gc.stats().waiters == 0u);
}

BOOST_FIXTURE_TEST_CASE(concurrent_sessions_share_syncs_and_all_arrive, Fixture) {
    constexpr int Threads = 16, Each = 10;
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < Threads; ++i)
        ts.emplace_back([&, i] {
            for (int j = 0; j < Each; ++j) {
                core::SinkStatus st;
                auto w = sink.open(envelope({i % 2 ? "alice" : "bob"}), st);
                if (!w || !w->write(Message.data(), Message.size())) continue;
                if (w->commit().status == core::SinkStatus::Ok) ++ok;
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(ok.load() == Threads * Each);
    BOOST_TEST(filesIn(mailDir("alice", "new")).size() + filesIn(mailDir("bob", "new")).size() ==
               static_cast<std::size_t>(Threads * Each));
    auto s = gc.stats();
    BOOST_TEST(s.waiters == static_cast<std::uint64_t>(Threads * Each));
    BOOST_TEST(s.syncs < 2 * s.waiters);  // shared: fewer than two syncs per message
    BOOST_TEST_MESSAGE("syncs " << s.syncs << " for " << Threads * Each << " messages");
}

BOOST_AUTO_TEST_SUITE_END()
