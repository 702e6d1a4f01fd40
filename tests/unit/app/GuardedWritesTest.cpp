// GuardedWrites: a write that goes out to a client that does not read is cut at its
// deadline (Poco::TimeoutException), whether it is a large reply, a flush of queued replies
// (before STARTTLS/STLS), or the final flush; a write that only queues costs nothing.
#include "app/GuardedWrites.h"

#include <Poco/Exception.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <thread>

using postern::app::ConnectionRegistry;
using postern::app::GuardedWrites;
using postern::net::LineChannel;
using namespace std::chrono_literals;

namespace {
struct Pair {
    Poco::Net::ServerSocket listener{Poco::Net::SocketAddress("127.0.0.1", 0)};
    Poco::Net::StreamSocket client{Poco::Net::SocketAddress::IPv4};  // a descriptor before connect
    Poco::Net::StreamSocket server;
    Pair() {
        client.setReceiveBufferSize(4096);  // the client never reads: keep its window small
        client.connect(listener.address());
        server = listener.acceptConnection();
        server.setSendBufferSize(4096);
    }
};

// Queues `n` octets of small replies (each below LineChannel's flush threshold).
void queueReplies(LineChannel& ch, std::size_t n) {
    const std::string reply = "250 2.0.0 Ok\r\n";
    for (std::size_t sent = 0; sent + reply.size() < n && !ch.sendsNow(reply.size()); sent += reply.size())
        ch.write(reply);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(guarded_writes)

BOOST_AUTO_TEST_CASE(a_flush_to_a_client_that_does_not_read_is_cut) {
    ConnectionRegistry registry;
    registry.startDeadlines(20ms, 1h);
    Pair p;
    auto token = registry.add(p.server);
    LineChannel ch(p.server, 30s);  // the socket's own send timeout would wait 30 s per send
    GuardedWrites writes(ch, registry, token, 300ms);
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_CHECK_THROW(
        {
            for (int i = 0; i < 200; ++i) {  // far more than the socket buffers hold
                queueReplies(ch, 60 * 1024);
                writes.flush();
            }
        },
        Poco::TimeoutException);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 10s));
    registry.remove(token);
}

BOOST_AUTO_TEST_CASE(a_large_write_to_a_client_that_does_not_read_is_cut) {
    ConnectionRegistry registry;
    registry.startDeadlines(20ms, 1h);
    Pair p;
    auto token = registry.add(p.server);
    LineChannel ch(p.server, 30s);
    GuardedWrites writes(ch, registry, token, 300ms);
    const std::string block(1 << 20, 'x');  // sent at once (over the flush threshold)
    BOOST_TEST(ch.sendsNow(block.size()));
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_CHECK_THROW(
        {
            for (int i = 0; i < 64; ++i) writes.write(block);
        },
        Poco::TimeoutException);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 10s));
    registry.remove(token);
}

BOOST_AUTO_TEST_CASE(queued_writes_and_reads_in_time_are_not_cut) {
    ConnectionRegistry registry;
    registry.startDeadlines(20ms, 1h);
    Pair p;
    auto token = registry.add(p.server);
    LineChannel ch(p.server, 30s);
    GuardedWrites writes(ch, registry, token, 300ms);
    writes.write("220 ready\r\n");
    BOOST_TEST(ch.hasOutput());  // queued, not sent
    writes.flush();
    char buf[64];
    p.client.setReceiveTimeout(Poco::Timespan(5, 0));
    BOOST_TEST(p.client.receiveBytes(buf, sizeof buf) == 11);
    std::this_thread::sleep_for(400ms);  // past the deadline of that (finished) write
    writes.write("250 ok\r\n");
    writes.flush();
    BOOST_TEST(p.client.receiveBytes(buf, sizeof buf) == 8);
    registry.remove(token);
}

BOOST_AUTO_TEST_SUITE_END()
