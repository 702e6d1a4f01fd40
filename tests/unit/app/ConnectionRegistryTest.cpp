// The drain registry: sessions tracked, idle sessions woken at shutdown, waitEmpty bounded.
#include "app/ConnectionRegistry.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

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
    BOOST_TEST(r.setIdle(t, true));
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
    BOOST_TEST(!r.setIdle(t2, true));  // after shutdown a session must say goodbye instead
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

BOOST_AUTO_TEST_SUITE_END()
