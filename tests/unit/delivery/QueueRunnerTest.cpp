// The delivery runner's schedule against a real queue directory and a scripted next hop on
// loopback (the shipped configuration with a relayhost): a rescan reads envelope/ unlocked,
// and what is queued or rescheduled while it reads must survive it.
#include "delivery/BounceSender.h"
#include "delivery/DeliveryAgent.h"
#include "delivery/MxResolver.h"
#include "delivery/QueueRunner.h"
#include "queue/FileOps.h"
#include "queue/OutboundQueue.h"
#include "unit/config/ShippedConfig.h"

#include "PeerLines.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include <stdlib.h>

using namespace postern;
using namespace postern::delivery;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "postern-runner-XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Never used here (no bounce is made): the bounce sender needs somewhere to put one.
struct NoSink : core::MessageSink {
    core::MessageWriterPtr open(const core::Envelope&, core::SinkStatus& status) override {
        status = core::SinkStatus::TempFail;
        return nullptr;
    }
};
struct NoDirectory : core::UserDirectory {
    core::Answer isLocalDomain(const std::string&) override { return core::Answer::No; }
    core::RecipientLookup lookupRecipient(const std::string&) override { return {}; }
};

// A next hop that answers every RCPT 451, each only once release() was called; counts its
// connections and QUITs.
class Peer {
public:
    Peer() : listener_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
        thread_ = std::thread([this] { run(); });
    }
    ~Peer() {
        stop_ = true;
        release();
        try {
            Poco::Net::StreamSocket wake;
            wake.connect(listener_.address());
        } catch (...) {
        }
        thread_.join();
    }
    std::uint16_t port() const { return listener_.address().port(); }
    void release() {
        std::lock_guard lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }
    bool waitQuits(int n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return quits_ >= n; });
    }
    int connections() const { return connections_.load(); }

private:
    void run() {
        while (!stop_) {
            Poco::Net::StreamSocket s;
            try {
                s = listener_.acceptConnection();
            } catch (...) {
                continue;
            }
            if (stop_) return;
            ++connections_;
            serve(s);
        }
    }
    void serve(Poco::Net::StreamSocket& s) {
        s.setReceiveTimeout(Poco::Timespan(10, 0));
        auto say = [&](const std::string& line) { s.sendBytes(line.data(), static_cast<int>(line.size())); };
        say("220 peer.test ESMTP\r\n");
        std::string buf, line;
        while (delivery::test::nextLine(s, buf, line)) {
            if (line.rfind("EHLO", 0) == 0) {
                say("250 peer.test\r\n");
            } else if (line.rfind("RCPT", 0) == 0) {
                std::unique_lock lock(mutex_);
                changed_.wait(lock, [&] { return released_; });
                lock.unlock();
                say("451 4.3.0 try again later\r\n");
            } else if (line == "QUIT") {
                say("221 bye\r\n");
                std::lock_guard lock(mutex_);
                ++quits_;
                changed_.notify_all();
                return;
            } else {
                say("250 ok\r\n");
            }
        }
    }

    Poco::Net::ServerSocket listener_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::mutex mutex_;
    std::condition_variable changed_;
    bool released_ = false;
    int quits_ = 0;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(queue_runner)

// Review finding: a rescan that read a message's envelope before a delivery attempt
// rescheduled it put the old due time back (the next host was tried again at once, and the
// retry schedule skipped a step), and forgot a message queued while it read (until the next
// scan). The scan hook holds the scan between its read and its apply while that happens.
BOOST_AUTO_TEST_CASE(a_rescan_keeps_what_changed_while_it_read_the_queue) {
    Peer peer;
    TempDir tmp;
    // Changed for the test: the next hop (a relayhost on loopback, no TLS offered), one
    // retry step of an hour, scans every 100 ms, no connection cache (QUIT after each message).
    auto conf = postern::test::shippedConfig();
    conf->setString("delivery.relayhost", "127.0.0.1:" + std::to_string(peer.port()));
    conf->setString("delivery.relayhost_tls", "may");
    conf->setString("delivery.retry_schedule", "1h");
    conf->setString("delivery.scan_interval", "100ms");
    conf->setString("delivery.connection_cache_time_limit", "0");
    const config::ServerConfig c = config::ServerConfig::load(*conf);

    queue::OutboundQueue q((tmp.path / "queue").string(), {});
    MxResolver resolver(ResolverSettings{"", 1000ms, false});
    NoSink sink;
    NoDirectory directory;
    BounceSender bounces(sink, directory, "mail.example.test", 1 << 20);
    DeliveryAgent agent(c.delivery, "mail.example.test", q, resolver, bounces, delivery::test::settings(), std::nullopt);
    QueueRunner runner(c.delivery, q, agent);
    q.setEnqueueListener([&](const queue::QueueEnvelope& e) { runner.onEnqueued(e); });

    auto enqueue = [&](std::chrono::system_clock::time_point due) {
        const std::string body = "Subject: x\r\n\r\nbody\r\n";
        const std::string src = (tmp.path / "src").string();
        fs::remove(src);
        BOOST_REQUIRE(queue::writeFileSynced(src, body));
        queue::QueueEnvelope e;
        e.sender = "alice@example.test";
        e.recipients = {"bob@remote.test"};
        e.nextAttempt = due;
        BOOST_REQUIRE(q.enqueue(src, body.size(), e));
        return e.id;
    };
    const std::string first = enqueue({});  // due at once: its attempt waits for the peer's RCPT reply

    std::atomic<int> scans{0};
    std::atomic<std::size_t> scheduledBeforeThirdApply{0};
    runner.setScanHook([&] {
        const int n = ++scans;  // 1: start(), in this thread; 2, 3...: the scanner
        if (n == 2) {
            // This scan read the first message as due (its attempt is in progress). Now the
            // attempt fails (451) and reschedules it an hour on, and a second message, due
            // in an hour, is queued, both before the scan applies what it read.
            peer.release();
            BOOST_CHECK(peer.waitQuits(1, 10s));
            std::this_thread::sleep_for(300ms);  // the worker rewrites the envelope and reschedules
            enqueue(std::chrono::system_clock::now() + 1h);
        } else if (n == 3) {
            scheduledBeforeThirdApply = runner.scheduledCount();
        }
    });
    runner.start();
    for (int i = 0; i < 100 && scans.load() < 4; ++i) std::this_thread::sleep_for(50ms);
    std::this_thread::sleep_for(300ms);  // time for a wrongly rescheduled attempt to connect
    runner.stop();
    BOOST_TEST(scans.load() >= 4);
    BOOST_TEST(peer.connections() == 1);  // one attempt, then an hour's wait
    const auto after = q.readEnvelope(first);
    BOOST_REQUIRE(after);
    BOOST_TEST(after->attempts == 1u);
    BOOST_TEST((after->nextAttempt > std::chrono::system_clock::now() + 50min));
    BOOST_TEST(scheduledBeforeThirdApply.load() == 2u);  // neither message lost between scans
}

BOOST_AUTO_TEST_SUITE_END()
