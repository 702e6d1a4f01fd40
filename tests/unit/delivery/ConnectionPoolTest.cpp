// ConnectionPool and ConnectionCache's use of it, with real SmtpClient sessions to a
// scripted one-connection server on loopback: parking, taking, the idle and reuse time
// limits (QUIT on expiry), the pool off, and a pooled session the server closed.
#include "delivery/ConnectionPool.h"
#include "delivery/DeliveryAgent.h"

#include "PeerLines.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

using namespace postern::delivery;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(connection_pool)

namespace {

// One connection: greeting, EHLO, then RSET answered 250 (or the connection dropped when
// closeOnRset), QUIT answered 221. Records the commands.
class OneConnServer {
public:
    explicit OneConnServer(bool closeOnRset = false)
        : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)), closeOnRset_(closeOnRset) {
        thread_ = std::thread([this] { run(); });
    }
    ~OneConnServer() { join(); }
    std::uint16_t port() const { return socket_.address().port(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    std::vector<std::string> commands() {
        std::lock_guard lock(mutex_);
        return commands_;
    }
    bool saw(const std::string& verb) {
        auto c = commands();
        return std::find(c.begin(), c.end(), verb) != c.end();
    }

private:
    void run() {
        Poco::Net::StreamSocket s = socket_.acceptConnection();
        s.setReceiveTimeout(Poco::Timespan(10, 0));
        send(s, "220 fake ESMTP\r\n");
        std::string buf;
        std::string line;
        while (test::nextLine(s, buf, line)) {
            {
                std::lock_guard lock(mutex_);
                commands_.push_back(line.substr(0, line.find(' ')));
            }
            if (line.rfind("EHLO", 0) == 0) {
                send(s, "250-fake.example\r\n250 PIPELINING\r\n");
            } else if (line == "RSET") {
                if (closeOnRset_) return;  // as if the server had timed the idle session out
                send(s, "250 2.0.0 ok\r\n");
            } else if (line == "QUIT") {
                send(s, "221 bye\r\n");
                return;
            } else {
                send(s, "502 no\r\n");
            }
        }
    }
    static void send(Poco::Net::StreamSocket& s, const std::string& text) {
        s.sendBytes(text.data(), static_cast<int>(text.size()));
    }

    Poco::Net::ServerSocket socket_;
    bool closeOnRset_;
    std::mutex mutex_;
    std::vector<std::string> commands_;
    std::thread thread_;
};

using test::settings;

std::unique_ptr<SmtpClient> openTo(OneConnServer& server, const ClientSettings& cs) {
    auto c = std::make_unique<SmtpClient>(cs);
    SmtpReply r = c->open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake.example", TlsPolicy::None, nullptr);
    BOOST_REQUIRE(r.isPositive());
    return c;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5000ms) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

}  // namespace

BOOST_AUTO_TEST_CASE(park_take_and_idle_expiry_with_quit) {
    OneConnServer server;
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(200), Millis(300'000));
    auto opened = ConnectionPool::Clock::now();
    SmtpClient* raw = nullptr;
    {
        auto c = openTo(server, cs);
        raw = c.get();
        BOOST_TEST(pool.park("k", std::move(c), opened));  // first idle one: tell the sweeper
    }
    BOOST_TEST(pool.idleCount() == 1u);
    ConnectionPool::Clock::time_point got{};
    BOOST_TEST(!pool.take("other", got));  // another next hop
    auto back = pool.take("k", got);
    BOOST_TEST(back.get() == raw);
    BOOST_TEST((got == opened));
    BOOST_TEST(!pool.take("k", got));  // owned by the taker now, not in the pool
    BOOST_TEST(!pool.park("k", std::move(back), opened));  // the sweeper already knows
    auto next = pool.sweep();
    BOOST_TEST(next.has_value());  // not expired yet: when it will
    BOOST_TEST(!server.saw("QUIT"));
    std::this_thread::sleep_until(*next + 20ms);
    BOOST_TEST(!pool.sweep().has_value());  // expired: closed, the pool empty
    BOOST_TEST(pool.idleCount() == 0u);
    server.join();
    BOOST_TEST(server.saw("QUIT"));
}

BOOST_AUTO_TEST_CASE(pool_off_closes_at_once) {
    OneConnServer server;
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(0), Millis(300'000));
    BOOST_TEST(!pool.enabled());
    BOOST_TEST(!pool.park("k", openTo(server, cs), ConnectionPool::Clock::now()));
    BOOST_TEST(pool.idleCount() == 0u);
    server.join();
    BOOST_TEST(server.saw("QUIT"));
}

BOOST_AUTO_TEST_CASE(connection_past_reuse_limit_is_not_kept) {
    OneConnServer server;
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(10'000), Millis(100));
    auto c = openTo(server, cs);
    std::this_thread::sleep_for(150ms);
    pool.park("k", std::move(c), ConnectionPool::Clock::now() - 150ms);
    BOOST_TEST(pool.idleCount() == 0u);
    server.join();
    BOOST_TEST(server.saw("QUIT"));
}

BOOST_AUTO_TEST_CASE(shutdown_closes_idle_and_refuses_more) {
    OneConnServer a, b;
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(60'000), Millis(300'000));
    pool.park("a", openTo(a, cs), ConnectionPool::Clock::now());
    auto late = openTo(b, cs);
    pool.abortAll();
    pool.closeAll();
    BOOST_TEST(pool.idleCount() == 0u);
    pool.park("b", std::move(late), ConnectionPool::Clock::now());  // after shutdown: closed
    BOOST_TEST(pool.idleCount() == 0u);
    a.join();
    b.join();
    BOOST_TEST(b.saw("QUIT"));
}

// Shutdown: a worker whose session abortAll() cut must not go on to the next MX address. A
// client put into an aborted cache never connects (before, each new SmtpClient started
// un-aborted, and the worker could wait out connect and data timeouts past the stop timeout).
BOOST_AUTO_TEST_CASE(aborted_cache_never_connects_again) {
    Poco::Net::ServerSocket listener(Poco::Net::SocketAddress("127.0.0.1", 0));
    ConnectionCache cache;
    cache.abortAll();
    SmtpClient* c = cache.put("k", std::make_unique<SmtpClient>(settings()));
    SmtpReply r = c->open(Poco::Net::SocketAddress("127.0.0.1", listener.address().port()), "fake.example",
                          TlsPolicy::None, nullptr);
    BOOST_TEST(!r.isPositive());
    BOOST_TEST(r.isTemporary());
    BOOST_TEST(r.text().find("stopping") != std::string::npos, r.text());
    BOOST_TEST(!c->usable());
    // Nothing reached the listener: no connection was made.
    BOOST_TEST(!listener.poll(Poco::Timespan(0, 100'000), Poco::Net::Socket::SELECT_READ));
    BOOST_TEST(cache.find("k") == nullptr);
    cache.closeAll();
}

BOOST_AUTO_TEST_CASE(cache_takes_pooled_connection_with_rset) {
    OneConnServer server;
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(60'000), Millis(300'000));
    SmtpClient* raw = nullptr;
    {
        ConnectionCache first(&pool);
        raw = first.put("k", openTo(server, cs));
        BOOST_TEST(first.parkAll());
    }
    BOOST_TEST(pool.idleCount() == 1u);
    ConnectionCache second(&pool);  // another worker
    BOOST_TEST(second.find("k") == raw);
    BOOST_TEST(server.saw("RSET"));
    BOOST_TEST(pool.idleCount() == 0u);
    second.closeAll();
    server.join();
    BOOST_TEST(server.saw("QUIT"));
}

BOOST_AUTO_TEST_CASE(cache_drops_pooled_connection_the_server_closed) {
    OneConnServer server(/*closeOnRset=*/true);
    ClientSettings cs = settings();
    ConnectionPool pool(Millis(60'000), Millis(300'000));
    {
        ConnectionCache first(&pool);
        first.put("k", openTo(server, cs));
        first.parkAll();
    }
    ConnectionCache second(&pool);
    // Stale: RSET fails, so no connection (the caller opens a new one), nothing left behind.
    BOOST_TEST(second.find("k") == nullptr);
    BOOST_TEST(pool.idleCount() == 0u);
    server.join();
}

BOOST_AUTO_TEST_SUITE_END()
