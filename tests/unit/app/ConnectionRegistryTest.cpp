// The drain registry: sessions tracked, idle sessions woken at shutdown, waitEmpty bounded.
#include "app/ConnectionRegistry.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <thread>

using postern::app::ConnectionRegistry;
using namespace std::chrono_literals;

namespace {
struct Pair {
    Poco::Net::ServerSocket listener{Poco::Net::SocketAddress("127.0.0.1", 0)};
    Poco::Net::StreamSocket client;
    Poco::Net::StreamSocket server;
    Pair() {
        client.connect(listener.address());
        server = listener.acceptConnection();
    }
};
}  // namespace

BOOST_AUTO_TEST_SUITE(connection_registry)

BOOST_AUTO_TEST_CASE(add_remove_size) {
    ConnectionRegistry r;
    Pair a, b;
    auto ta = r.add(a.server);
    auto tb = r.add(b.server);
    BOOST_TEST(ta != tb);
    BOOST_TEST(r.size() == 2u);
    r.remove(ta);
    BOOST_TEST(r.size() == 1u);
    r.remove(tb);
    BOOST_TEST(r.size() == 0u);
    BOOST_TEST(r.waitEmpty(10ms) == 0u);
}

BOOST_AUTO_TEST_CASE(shutdown_wakes_idle_sessions_and_refuses_new_waits) {
    ConnectionRegistry r;
    Pair p;
    auto t = r.add(p.server);
    BOOST_TEST(r.beginWait(t, ConnectionRegistry::TimePoint{}));
    std::thread reader([&] {
        // Blocks until shutdown shuts the read side: then receive returns 0 (EOF).
        char c;
        p.server.setReceiveTimeout(Poco::Timespan(10, 0));
        int n = p.server.receiveBytes(&c, 1);
        BOOST_TEST(n == 0);
        r.remove(t);
    });
    std::this_thread::sleep_for(50ms);
    r.beginShutdown();
    BOOST_TEST(r.isShuttingDown());
    reader.join();
    BOOST_TEST(r.waitEmpty(1s) == 0u);
    Pair q;
    auto t2 = r.add(q.server);
    BOOST_TEST(!r.beginWait(t2, ConnectionRegistry::TimePoint{}));  // after shutdown a session must say goodbye instead
    r.remove(t2);
}

BOOST_AUTO_TEST_CASE(wait_empty_returns_what_is_left_at_the_deadline) {
    ConnectionRegistry r;
    Pair p;
    auto t = r.add(p.server);
    auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST(r.waitEmpty(100ms) == 1u);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 90ms));
    r.remove(t);
}

// A waiting session past its deadline has its read side shut (its blocked read returns
// EOF) and learns it from endWait; one without a deadline, or not waiting, is left alone.
BOOST_AUTO_TEST_CASE(deadline_cuts_only_an_overdue_wait) {
    ConnectionRegistry r;
    Pair a, b, c;
    auto ta = r.add(a.server);
    auto tb = r.add(b.server);
    auto tc = r.add(c.server);
    const auto now = std::chrono::steady_clock::now();
    BOOST_TEST(r.beginWait(ta, now + 10s));
    BOOST_TEST(r.beginWait(tb, ConnectionRegistry::TimePoint{}));
    BOOST_TEST(r.cutOverdue(now, 1h) == 0u);
    BOOST_TEST(r.cutOverdue(now + 11s, 1h) == 1u);
    BOOST_TEST(r.cutOverdue(now + 12s, 1h) == 0u);  // once
    char ch;
    a.server.setReceiveTimeout(Poco::Timespan(10, 0));
    BOOST_TEST(a.server.receiveBytes(&ch, 1) == 0);  // EOF at once
    BOOST_TEST(r.endWait(ta));
    BOOST_TEST(!r.endWait(tb));
    // A wait that ended in time is not cut later.
    BOOST_TEST(r.beginWait(tc, now + 1s));
    BOOST_TEST(!r.endWait(tc));
    BOOST_TEST(r.cutOverdue(now + 20s, 1h) == 0u);
    r.remove(ta);
    r.remove(tb);
    r.remove(tc);
}

// A wait for message data (not idle) is cut at its deadline but not woken by a shutdown:
// the drain gives a message in progress its grace time.
BOOST_AUTO_TEST_CASE(a_data_wait_is_cut_at_its_deadline_not_at_shutdown) {
    ConnectionRegistry r;
    Pair p;
    auto t = r.add(p.server);
    const auto now = std::chrono::steady_clock::now();
    BOOST_TEST(r.beginWait(t, now + 10s, /*idle=*/false));
    r.beginShutdown();
    p.server.setReceiveTimeout(Poco::Timespan(0, 200000));
    char ch;
    BOOST_CHECK_THROW(p.server.receiveBytes(&ch, 1), Poco::TimeoutException);  // not woken
    BOOST_TEST(r.cutOverdue(now + 11s, 1h) == 1u);
    p.server.setReceiveTimeout(Poco::Timespan(10, 0));
    BOOST_TEST(p.server.receiveBytes(&ch, 1) == 0);
    BOOST_TEST(r.endWait(t));
    r.remove(t);
}

// The thread startDeadlines() starts cuts a wait whose deadline passed.
BOOST_AUTO_TEST_CASE(deadline_thread_wakes_a_blocked_read) {
    ConnectionRegistry r;
    r.startDeadlines(20ms, 1h);
    Pair p;
    auto t = r.add(p.server);
    BOOST_TEST(r.beginWait(t, std::chrono::steady_clock::now() + 50ms));
    char ch;
    p.server.setReceiveTimeout(Poco::Timespan(30, 0));
    BOOST_TEST(p.server.receiveBytes(&ch, 1) == 0);  // woken long before the socket timeout
    BOOST_TEST(r.endWait(t));
    r.remove(t);
}

namespace {
// Sends until the send fails (true) or `limit` passes (false): the peer never reads.
bool sendUntilFailure(Poco::Net::StreamSocket& s, std::chrono::seconds limit) {
    s.setSendTimeout(Poco::Timespan(static_cast<long>(limit.count()), 0));
    const std::string block(64 * 1024, 'x');
    const auto until = std::chrono::steady_clock::now() + limit;
    try {
        while (std::chrono::steady_clock::now() < until)
            if (s.sendBytes(block.data(), static_cast<int>(block.size())) <= 0) return true;
    } catch (const Poco::Exception&) {
        return true;  // EPIPE / reset: cut
    }
    return false;
}
}  // namespace

// A client that does not read: a write past its deadline is cut in both directions (a
// read-side shutdown would not wake a thread blocked in send).
BOOST_AUTO_TEST_CASE(an_overdue_write_is_cut_both_ways) {
    ConnectionRegistry r;
    r.startDeadlines(20ms, 1h);
    Pair p;
    auto t = r.add(p.server);
    const auto t0 = std::chrono::steady_clock::now();
    {
        ConnectionRegistry::WriteDeadline guard(r, t, t0 + 200ms);
        BOOST_TEST(sendUntilFailure(p.server, 20s));
    }
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 5s));
    BOOST_TEST(r.cutOverdue(std::chrono::steady_clock::now() + 2h, 1ms) == 0u);  // cut once only
    r.remove(t);
}

// A session whose read was cut and that then blocks sending its goodbye to a client that
// does not read: shut both ways `goodbye` after the cut.
BOOST_AUTO_TEST_CASE(a_cut_session_stuck_in_its_goodbye_is_closed_after_the_goodbye_time) {
    ConnectionRegistry r;
    Pair p;
    auto t = r.add(p.server);
    const auto now = std::chrono::steady_clock::now();
    BOOST_TEST(r.beginWait(t, now + 10s));
    BOOST_TEST(r.cutOverdue(now + 11s, 5s) == 1u);
    BOOST_TEST(r.endWait(t));
    BOOST_TEST(r.cutOverdue(now + 15s, 5s) == 0u);  // within its goodbye time
    std::thread watchdog([&] {
        std::this_thread::sleep_for(200ms);
        BOOST_TEST(r.cutOverdue(now + 16s, 5s) == 1u);
    });
    BOOST_TEST(sendUntilFailure(p.server, 20s));
    watchdog.join();
    BOOST_TEST(r.cutOverdue(now + 60s, 5s) == 0u);
    r.remove(t);
}

// The session's channel closes its descriptor before the session leaves the registry, and
// the number may go to a new connection at once. The registry acts on its own duplicate:
// the session's socket is shut, never the one that got the number.
BOOST_AUTO_TEST_CASE(a_reused_descriptor_number_is_never_shut) {
    ConnectionRegistry r;
    Pair a, b;
    const int number = ::dup(a.server.impl()->sockfd());
    BOOST_REQUIRE(number >= 0);
    Poco::Net::StreamSocket session(new Poco::Net::StreamSocketImpl(number));  // closes `number` when it goes
    auto t = r.add(session);
    // The session's descriptor closed, and its number given to b's socket (as accept(2)
    // would give it to the next client).
    BOOST_REQUIRE(::dup2(b.server.impl()->sockfd(), number) == number);
    r.abortAll(/*hard=*/true);
    char c = 0;
    b.client.sendBytes("x", 1);
    b.server.setReceiveTimeout(Poco::Timespan(5, 0));
    BOOST_TEST(b.server.receiveBytes(&c, 1) == 1);  // untouched
    a.server.close();  // a's socket now open only through the registry's duplicate
    a.client.setReceiveTimeout(Poco::Timespan(5, 0));
    BOOST_TEST(a.client.receiveBytes(&c, 1) == 0);  // a's socket was shut (EOF)
    r.remove(t);
}

// The registry's duplicate goes with the entry: the client sees the close once the session
// has closed its own descriptor and left the registry.
BOOST_AUTO_TEST_CASE(remove_releases_the_duplicate) {
    ConnectionRegistry r;
    Pair p;
    auto t = r.add(p.server);
    p.server.close();
    r.remove(t);
    char c = 0;
    p.client.setReceiveTimeout(Poco::Timespan(5, 0));
    BOOST_TEST(p.client.receiveBytes(&c, 1) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
