#include "queue/FileOps.h"
#include "queue/OutboundQueue.h"

#include <boost/test/unit_test.hpp>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <set>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace postern::queue;
namespace fs = std::filesystem;

BOOST_AUTO_TEST_SUITE(outbound_queue)

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "postern-queue-XXXXXX").string();
        const char* made = ::mkdtemp(tmpl.data());
        BOOST_REQUIRE(made != nullptr);
        path = made;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string writeSource(const fs::path& dir, const std::string& bytes) {
    std::string p = (dir / "src").string();
    fs::remove(p);
    BOOST_REQUIRE(writeFileSynced(p, bytes));
    return p;
}

QueueEnvelope envelopeFor(std::vector<std::string> rcpts) {
    QueueEnvelope e;
    e.arrival = std::chrono::system_clock::now();
    e.sender = "bob@example.org";
    e.recipients = std::move(rcpts);
    e.clientIp = "192.0.2.7";
    return e;
}

std::size_t countFiles(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

unsigned modeOf(const fs::path& p) {
    struct stat st{};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
}

std::string slurp(const fs::path& p) {
    std::string s;
    BOOST_REQUIRE(readFile(p.string(), s));
    return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ids_are_16_hex_and_unique) {
    std::set<std::string> seen;
    for (int i = 0; i < 5000; ++i) {
        auto id = OutboundQueue::newId();
        BOOST_TEST(OutboundQueue::isValidId(id));
        seen.insert(id);
    }
    BOOST_TEST(seen.size() == 5000u);
    BOOST_TEST(!OutboundQueue::isValidId("../../etc/passwd"));
    BOOST_TEST(!OutboundQueue::isValidId("65F1C2A0001F3B9C"));
    BOOST_TEST(!OutboundQueue::isValidId("65f1c2a0001f3b9"));
}

BOOST_AUTO_TEST_CASE(enqueue_places_data_and_envelope_durably) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    BOOST_TEST(modeOf(t.path / "q" / "incoming") == 0700u);
    BOOST_TEST(modeOf(t.path / "q" / "data") == 0700u);
    BOOST_TEST(modeOf(t.path / "q" / "envelope") == 0700u);

    std::string body = "Subject: hi\r\n\r\nhello\r\n";
    auto src = writeSource(t.path, body);
    auto e = envelopeFor({"alice@example.net"});
    BOOST_REQUIRE(q.enqueue(src, body.size(), e));
    BOOST_TEST(OutboundQueue::isValidId(e.id));
    BOOST_TEST(slurp(q.dataPath(e.id)) == body);
    BOOST_TEST(modeOf(q.dataPath(e.id)) == 0600u);
    BOOST_TEST(modeOf(q.envelopePath(e.id)) == 0600u);
    auto read = q.readEnvelope(e.id);
    BOOST_REQUIRE(read);
    BOOST_TEST(read->recipients == std::vector<std::string>{"alice@example.net"});
    BOOST_TEST(read->sender == "bob@example.org");
    // No temp envelope left behind.
    BOOST_TEST(countFiles(t.path / "q" / "envelope") == 1u);
    BOOST_TEST(q.stats().messages == 1u);
    BOOST_TEST(q.stats().bytes == body.size());
}

BOOST_AUTO_TEST_CASE(clashing_id_gets_a_new_one) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    auto src = writeSource(t.path, "x\r\n");
    auto a = envelopeFor({"a@example.net"});
    a.id = "0000000000000001";
    BOOST_REQUIRE(q.enqueue(src, 3, a));
    auto b = envelopeFor({"b@example.net"});
    b.id = "0000000000000001";
    BOOST_REQUIRE(q.enqueue(src, 3, b));
    BOOST_TEST(a.id == "0000000000000001");
    BOOST_TEST(b.id != a.id);
    BOOST_TEST(q.list().size() == 2u);
    BOOST_TEST(q.readEnvelope(a.id)->recipients[0] == "a@example.net");
}

BOOST_AUTO_TEST_CASE(a_moved_source_becomes_the_data_file_and_is_synced_through_its_descriptor) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    std::string body = "Subject: moved\r\n\r\nbody\r\n";
    std::string path = q.incomingDirectory() + "/m1";
    {
        std::ofstream(path, std::ios::binary) << body;
    }
    struct stat before{};
    BOOST_REQUIRE(::stat(path.c_str(), &before) == 0);
    OutboundQueue::Source source{path};
    source.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    BOOST_REQUIRE(source.fd >= 0);
    source.move = true;
    auto e = envelopeFor({"a@example.net"});
    BOOST_REQUIRE(q.enqueue(source, body.size(), e));
    ::close(source.fd);
    BOOST_TEST(source.moved);
    BOOST_TEST(!fs::exists(path));  // renamed, not linked: nothing left to unlink
    BOOST_TEST(countFiles(q.incomingDirectory()) == 0u);
    BOOST_TEST(slurp(q.dataPath(e.id)) == body);
    struct stat after{};
    BOOST_REQUIRE(::stat(q.dataPath(e.id).c_str(), &after) == 0);
    BOOST_TEST(after.st_ino == before.st_ino);
    BOOST_TEST(after.st_nlink == 1u);
    BOOST_TEST(q.readEnvelope(e.id)->recipients == std::vector<std::string>{"a@example.net"});

    // A clash on the id: RENAME_NOREPLACE refuses to replace the queued data, a new id is taken.
    std::string second = q.incomingDirectory() + "/m2";
    {
        std::ofstream(second, std::ios::binary) << "other\r\n";
    }
    OutboundQueue::Source s2{second};
    s2.move = true;
    auto clash = envelopeFor({"b@example.net"});
    clash.id = e.id;
    BOOST_REQUIRE(q.enqueue(s2, 7, clash));
    BOOST_TEST(clash.id != e.id);
    BOOST_TEST(slurp(q.dataPath(e.id)) == body);
    BOOST_TEST(slurp(q.dataPath(clash.id)) == "other\r\n");
    BOOST_TEST(q.stats().messages == 2u);
}

BOOST_AUTO_TEST_CASE(a_moved_source_that_cannot_be_queued_leaves_nothing) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    std::string path = q.incomingDirectory() + "/m1";
    {
        std::ofstream(path, std::ios::binary) << "lost\r\n";
    }
    // The envelope step fails after the data was moved: envelope/ is not a directory.
    fs::remove_all(t.path / "q" / "envelope");
    {
        std::ofstream(t.path / "q" / "envelope") << "in the way";
    }
    OutboundQueue::Source source{path};
    source.move = true;
    auto e = envelopeFor({"a@example.net"});
    BOOST_TEST(!q.enqueue(source, 6, e));
    BOOST_TEST(source.moved);  // it had been moved: the caller must not unlink `path` again
    BOOST_TEST(!fs::exists(path));
    BOOST_TEST(countFiles(t.path / "q" / "data") == 0u);
    BOOST_TEST(q.stats().messages == 0u);
}

BOOST_AUTO_TEST_CASE(a_stale_envelope_temp_file_of_the_same_id_is_replaced) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    auto src = writeSource(t.path, "x\r\n");
    auto e = envelopeFor({"a@example.net"});
    e.id = "00000000000000aa";
    BOOST_REQUIRE(writeFileSynced(q.directory() + "/envelope/." + e.id + ".tmp", "torn"));
    BOOST_REQUIRE(q.enqueue(src, 3, e));
    BOOST_TEST(e.id == "00000000000000aa");
    BOOST_TEST(q.readEnvelope(e.id)->recipients == std::vector<std::string>{"a@example.net"});
    BOOST_TEST(countFiles(t.path / "q" / "envelope") == 1u);
}

BOOST_AUTO_TEST_CASE(is_full_by_count_and_by_bytes) {
    TempDir t;
    {
        OutboundQueue q((t.path / "q1").string(), {0, 2});
        auto src = writeSource(t.path, "12345");
        auto e1 = envelopeFor({"a@x"}), e2 = envelopeFor({"b@x"});
        BOOST_TEST(!q.isFull());
        BOOST_REQUIRE(q.enqueue(src, 5, e1));
        BOOST_TEST(!q.isFull());
        BOOST_REQUIRE(q.enqueue(src, 5, e2));
        BOOST_TEST(q.isFull());
        BOOST_REQUIRE(q.remove(e1.id));
        BOOST_TEST(!q.isFull());
    }
    {
        OutboundQueue q((t.path / "q2").string(), {8, 0});
        auto src = writeSource(t.path, "12345");
        auto e1 = envelopeFor({"a@x"}), e2 = envelopeFor({"b@x"});
        BOOST_REQUIRE(q.enqueue(src, 5, e1));
        BOOST_TEST(!q.isFull());
        BOOST_REQUIRE(q.enqueue(src, 5, e2));
        BOOST_TEST(q.isFull());
        BOOST_TEST(q.stats().bytes == 10u);
    }
    // A new instance (restart) counts what is on disk.
    OutboundQueue again((t.path / "q2").string(), {8, 0});
    BOOST_TEST(again.stats().messages == 2u);
    BOOST_TEST(again.stats().bytes == 10u);
    BOOST_TEST(again.isFull());
}

BOOST_AUTO_TEST_CASE(remove_and_update) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    auto src = writeSource(t.path, "data\r\n");
    auto e = envelopeFor({"a@example.net"});
    BOOST_REQUIRE(q.enqueue(src, 6, e));

    e.attempts = 2;
    e.lastError = "421 4.4.2 timeout";
    BOOST_REQUIRE(q.updateEnvelope(e));
    BOOST_TEST(q.readEnvelope(e.id)->attempts == 2u);
    BOOST_TEST(q.readEnvelope(e.id)->lastError == "421 4.4.2 timeout");

    BOOST_REQUIRE(q.remove(e.id));
    BOOST_TEST(!fs::exists(q.envelopePath(e.id)));
    BOOST_TEST(!fs::exists(q.dataPath(e.id)));
    BOOST_TEST(q.stats().messages == 0u);
    BOOST_TEST(q.stats().bytes == 0u);
    BOOST_TEST(q.remove(e.id));               // already gone: fine
    BOOST_TEST(!q.updateEnvelope(e));         // not queued: no resurrection
    BOOST_TEST(!fs::exists(q.envelopePath(e.id)));
    BOOST_TEST(!q.remove("../incoming/x"));  // ids are validated
}

BOOST_AUTO_TEST_CASE(an_envelope_emptied_by_modify_removes_the_message_synced_or_not) {
    // posternctl queue delete empties the envelope with syncRemoval (the envelope
    // directory is fsynced after the unlink); a delivery does so without.
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    for (bool sync : {true, false}) {
        auto src = writeSource(t.path, "data\r\n");
        auto e = envelopeFor({"a@example.net"});
        BOOST_REQUIRE(q.enqueue(src, 6, e));
        auto gone = q.modifyEnvelope(
            e.id,
            [](QueueEnvelope& x) {
                x.recipients.clear();
                return true;
            },
            sync);
        BOOST_REQUIRE(gone);
        BOOST_TEST(gone->recipients.empty());
        BOOST_TEST(!fs::exists(q.envelopePath(e.id)));
        BOOST_TEST(!fs::exists(q.dataPath(e.id)));
        BOOST_TEST(q.stats().messages == 0u);
    }
}

BOOST_AUTO_TEST_CASE(list_is_oldest_first) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    auto src = writeSource(t.path, "abc");
    auto newer = envelopeFor({"n@x"});
    newer.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(2000));
    auto older = envelopeFor({"o@x"});
    older.arrival = std::chrono::system_clock::time_point(std::chrono::seconds(1000));
    BOOST_REQUIRE(q.enqueue(src, 3, newer));
    BOOST_REQUIRE(q.enqueue(src, 3, older));
    auto l = q.list();
    BOOST_REQUIRE(l.size() == 2u);
    BOOST_TEST(l[0].envelope.id == older.id);
    BOOST_TEST(l[1].envelope.id == newer.id);
    BOOST_TEST(l[0].size == 3u);
}

BOOST_AUTO_TEST_CASE(recover_removes_crash_leftovers_only) {
    TempDir t;
    OutboundQueue q((t.path / "q").string(), {});
    auto src = writeSource(t.path, "kept");
    auto e = envelopeFor({"a@x"});
    BOOST_REQUIRE(q.enqueue(src, 4, e));
    // Leftovers: a half-received message, data without envelope, a torn envelope temp.
    BOOST_REQUIRE(writeFileSynced(q.incomingDirectory() + "/partial", "half"));
    BOOST_REQUIRE(writeFileSynced(q.dataPath("00000000deadbeef"), "orphan"));
    BOOST_REQUIRE(writeFileSynced(q.directory() + "/envelope/.00000000deadbeef.tmp", "postern-queue 1\n"));
    // A constructor (posternctl) must not touch anything.
    OutboundQueue readOnly(q.directory(), {});
    BOOST_TEST(fs::exists(q.incomingDirectory() + "/partial"));

    BOOST_TEST(q.recover() == 3u);
    BOOST_TEST(countFiles(q.incomingDirectory()) == 0u);
    BOOST_TEST(!fs::exists(q.dataPath("00000000deadbeef")));
    BOOST_TEST(slurp(q.dataPath(e.id)) == "kept");
    BOOST_TEST(q.list().size() == 1u);
    BOOST_TEST(q.stats().messages == 1u);
}

BOOST_AUTO_TEST_CASE(unwritable_queue_dir_fails_at_construction) {
    TempDir t;
    BOOST_REQUIRE(writeFileSynced((t.path / "file").string(), "x"));
    BOOST_CHECK_THROW(OutboundQueue((t.path / "file" / "q").string(), {}), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(make_directories_creates_what_is_missing_and_refuses_a_file) {
    TempDir t;
    const std::string deep = (t.path / "a" / "b" / "c").string();
    BOOST_TEST(makeDirectories(deep, 0750));
    BOOST_TEST(fs::is_directory(deep));
    struct stat st{};
    BOOST_REQUIRE(::stat((t.path / "a").c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == (0750 & ~[] { mode_t m = ::umask(0); ::umask(m); return m; }()));
    BOOST_TEST(makeDirectories(deep, 0750));                        // exists: fine
    BOOST_TEST(makeDirectories(deep + "/", 0750));                  // trailing slash
    BOOST_TEST(makeDirectories((t.path / "a" / "x" / "y").string(), 0700));  // partly there
    BOOST_TEST(fs::is_directory(t.path / "a" / "x" / "y"));
    { std::ofstream((t.path / "file").string()) << "x"; }
    errno = 0;
    BOOST_TEST(!makeDirectories((t.path / "file").string(), 0700));
    BOOST_TEST(errno == ENOTDIR);
    BOOST_TEST(!makeDirectories((t.path / "file" / "sub").string(), 0700));
    BOOST_TEST(!makeDirectories("", 0700));
}

BOOST_AUTO_TEST_CASE(rename_no_replace_never_replaces) {
    TempDir t;
    const std::string a = (t.path / "a").string(), b = (t.path / "b").string(), c = (t.path / "c").string();
    BOOST_REQUIRE(writeFileSynced(a, "first"));
    BOOST_REQUIRE(writeFileSynced(b, "second"));
    errno = 0;
    BOOST_TEST(!renameNoReplace(a, b));
    BOOST_TEST(errno == EEXIST);
    BOOST_TEST(slurp(b) == "second");
    BOOST_TEST(slurp(a) == "first");
    BOOST_TEST(renameNoReplace(a, c));
    BOOST_TEST(slurp(c) == "first");
    BOOST_TEST(!fs::exists(a));
    // Already the same file (a link whose unlink a crash prevented): done, one name left.
    BOOST_REQUIRE(::link(c.c_str(), a.c_str()) == 0);
    BOOST_TEST(renameNoReplace(a, c));
    BOOST_TEST(!fs::exists(a));
    BOOST_TEST(slurp(c) == "first");
}

BOOST_AUTO_TEST_SUITE_END()
