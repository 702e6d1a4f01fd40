// Client-side deadlines of server/pg against a server that does not answer:
//  - without a database: a listener whose kernel completes the TCP handshake but that never
//    reads (what a SIGSTOPped postmaster looks like to a new connection);
//  - with a real PostgreSQL (POSTERN_TEST_PG_CONNINFO; tests/e2e/test_backend_faults_pg.py
//    runs these): through a TCP proxy in this process that can be frozen (stops forwarding
//    in both directions and stops accepting), i.e. a stuck host or a network black hole
//    under connections that are already open.
#include "pg/Connection.h"
#include "pg/Pool.h"
#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace postern::pg {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A loopback listener on an ephemeral port.
int listenLoopback(int& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(fd >= 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    BOOST_REQUIRE(::listen(fd, 64) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

// Listens and never accepts: the kernel completes the handshake, nobody answers the startup
// packet.
struct SilentServer {
    int fd = -1;
    int port = 0;
    SilentServer() { fd = listenLoopback(port); }
    ~SilentServer() { ::close(fd); }
    std::string conninfo() const {
        return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=x user=x sslmode=disable";
    }
};

// Forwards 127.0.0.1:port() to the target; freeze() stops all traffic and accepting.
class FreezableProxy {
public:
    FreezableProxy(std::string host, int targetPort) : host_(std::move(host)), target_(targetPort) {
        listen_ = listenLoopback(port_);
        thread_ = std::thread([this] { loop(); });
    }
    ~FreezableProxy() {
        stop_ = true;
        thread_.join();
        for (auto& [a, b] : pairs_) {
            ::close(a);
            ::close(b);
        }
        if (listen_ >= 0) ::close(listen_);
    }
    int port() const { return port_; }
    void freeze() { frozen_ = true; }
    void thaw() { frozen_ = false; }
    // Drops every connection (no answer to what is in flight) and refuses new ones: a node
    // losing the server mid-statement, the server then restarting.
    void cutAndRefuse() {
        cut_ = true;
        while (cut_) std::this_thread::sleep_for(5ms);
    }

private:
    void loop() {
        while (!stop_) {
            if (cut_) {
                for (auto& [a, b] : pairs_) {
                    ::close(a);
                    ::close(b);
                }
                pairs_.clear();
                ::close(listen_);
                listen_ = -1;
                cut_ = false;
                frozen_ = true;  // nothing to serve any more
                continue;
            }
            if (frozen_) {
                std::this_thread::sleep_for(20ms);
                continue;
            }
            std::vector<pollfd> fds{{listen_, POLLIN, 0}};
            for (auto& [a, b] : pairs_) {
                fds.push_back({a, POLLIN, 0});
                fds.push_back({b, POLLIN, 0});
            }
            if (::poll(fds.data(), fds.size(), 20) <= 0 || frozen_) continue;
            const std::size_t polled = pairs_.size();  // accept() may add one not in fds
            if (fds[0].revents & POLLIN) accept();
            std::vector<std::size_t> dead;
            for (std::size_t i = 0; i < polled; ++i) {
                auto [a, b] = pairs_[i];
                if ((fds[1 + 2 * i].revents && !pump(a, b)) || (fds[2 + 2 * i].revents && !pump(b, a))) {
                    dead.push_back(i);
                }
            }
            for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
                ::close(pairs_[*it].first);
                ::close(pairs_[*it].second);
                pairs_.erase(pairs_.begin() + static_cast<long>(*it));
            }
        }
    }
    void accept() {
        int c = ::accept(listen_, nullptr, nullptr);
        if (c < 0) return;
        int s = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(target_));
        ::inet_pton(AF_INET, host_.c_str(), &a.sin_addr);
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ::close(s);
            ::close(c);
            return;
        }
        pairs_.emplace_back(c, s);
    }
    static bool pump(int from, int to) {
        char buf[65536];
        ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0) return false;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = ::write(to, buf + off, static_cast<std::size_t>(n - off));
            if (w <= 0) return false;
            off += w;
        }
        return true;
    }

    std::string host_;
    int target_;
    int listen_ = -1;
    int port_ = 0;
    std::atomic<bool> frozen_{false};
    std::atomic<bool> cut_{false};
    std::atomic<bool> stop_{false};
    std::vector<std::pair<int, int>> pairs_;  // (client, server), touched by the thread only
    std::thread thread_;
};

// POSTERN_TEST_PG_CONNINFO's host and port (a TCP conninfo), for the proxy's target.
std::pair<std::string, int> pgHostPort() {
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(testing::envOrNull("POSTERN_TEST_PG_CONNINFO"), &err);
    BOOST_REQUIRE_MESSAGE(opts, "cannot parse POSTERN_TEST_PG_CONNINFO");
    std::string host = "127.0.0.1";
    int port = 5432;
    for (auto* o = opts; o->keyword; ++o) {
        if (!o->val) continue;
        if (std::string(o->keyword) == "host") host = o->val;
        if (std::string(o->keyword) == "port") port = std::stoi(o->val);
    }
    PQconninfoFree(opts);
    BOOST_REQUIRE_MESSAGE(host.find('/') == std::string::npos, "POSTERN_TEST_PG_CONNINFO must use TCP");
    return {host, port};
}

// Settings that reach the database through the proxy (later keywords win in a conninfo).
ConnectSettings viaProxy(const FreezableProxy& proxy, std::size_t poolSize = 2) {
    ConnectSettings s = testing::settings(poolSize);
    s.conninfo += " host=127.0.0.1 port=" + std::to_string(proxy.port());
    s.connectTimeout = 2s;
    s.statementTimeout = 1s;
    return s;
}

const Statement Probe{"postern_test_probe", "SELECT $1::text"};

// After an outage the pool tries again at most once per connect_timeout: poll, bounded.
QueryResult executeUntilOk(Pool& pool, const std::string& value, std::chrono::seconds within = 10s) {
    const auto end = Clock::now() + within;
    QueryResult r;
    do {
        r = pool.execute(Probe, {value});
        if (r.ok()) break;
        std::this_thread::sleep_for(100ms);
    } while (Clock::now() < end);
    return r;
}

BOOST_AUTO_TEST_SUITE(pg_deadline)

BOOST_AUTO_TEST_CASE(connect_to_a_server_that_never_answers_is_bounded) {
    SilentServer silent;
    ConnectSettings s;
    s.conninfo = silent.conninfo();
    s.connectTimeout = 2s;
    auto t0 = Clock::now();
    std::string error;
    ConnectionPtr c = Connection::open(s, error);
    const double took = secondsSince(t0);
    BOOST_TEST(!c);
    BOOST_TEST_MESSAGE("connect gave up after " << took << " s: " << error);
    // It did wait for the server (libpq's timeout, not a refusal). libpq counts
    // connect_timeout in whole seconds of time(), so "2 s" may end just after 1 s.
    BOOST_TEST(took >= 0.9);
    BOOST_TEST(took < 6.0);   // connect_timeout 2 s + generous margin
}

BOOST_AUTO_TEST_CASE(pool_over_a_server_that_never_answers_answers_every_caller) {
    SilentServer silent;
    ConnectSettings s;
    s.conninfo = silent.conninfo();
    s.connectTimeout = 2s;
    s.poolSize = 2;
    Pool pool(s);
    // Twice the pool size at once: the first two wait for the connect, the others for a slot.
    auto t0 = Clock::now();
    std::vector<std::future<QueryResult>> calls;
    for (int i = 0; i < 4; ++i) {
        calls.push_back(std::async(std::launch::async, [&pool] { return pool.execute(Probe, {std::string("x")}); }));
    }
    for (auto& f : calls) {
        BOOST_REQUIRE(f.wait_for(15s) == std::future_status::ready);
        QueryResult r = f.get();
        BOOST_TEST(r.failed());
    }
    BOOST_TEST(secondsSince(t0) < 10.0);  // connect_timeout (slot) + connect_timeout + margin
    // Down now: the next caller does not wait for another connect.
    t0 = Clock::now();
    QueryResult r = pool.execute(Probe, {std::string("x")});
    BOOST_TEST(r.sqlState == "08006");
    BOOST_TEST(secondsSince(t0) < 0.5);
}

BOOST_AUTO_TEST_CASE(statement_on_a_frozen_server_hits_the_client_deadline, *boost::unit_test::precondition(testing::WithPg())) {
    auto [host, port] = pgHostPort();
    FreezableProxy proxy(host, port);
    std::string error;
    ConnectionPtr c = Connection::open(viaProxy(proxy), error);
    BOOST_REQUIRE_MESSAGE(c, "connect through the proxy: " + error);
    BOOST_TEST(c->callTimeout().count() == 1500);  // 1 s + grace
    QueryResult r = c->execPrepared(Probe, {std::string("hello")});
    BOOST_REQUIRE_MESSAGE(r.ok(), r.error);
    BOOST_TEST(r.rows[0][0].value_or("") == "hello");

    proxy.freeze();
    auto t0 = Clock::now();
    r = c->execPrepared(Probe, {std::string("frozen")});
    const double took = secondsSince(t0);
    BOOST_TEST_MESSAGE("frozen call returned after " << took << " s: " << r.error);
    BOOST_TEST(r.failed());
    BOOST_TEST(r.timedOut);
    BOOST_TEST(r.isTimeout());
    BOOST_TEST(took >= 1.4);
    BOOST_TEST(took < 5.0);
    BOOST_TEST(!c->isOk());
    BOOST_TEST(c->timedOut());
    BOOST_TEST(!c->isBroken(r));  // not worth a retry

    // Every later call on it fails at once (a caller's ROLLBACK must not wait again).
    t0 = Clock::now();
    BOOST_TEST(c->exec("ROLLBACK").failed());
    BOOST_TEST(secondsSince(t0) < 0.5);
    proxy.thaw();
}

BOOST_AUTO_TEST_CASE(tcp_keepalives_are_set_unless_the_conninfo_sets_them, *boost::unit_test::precondition(testing::WithPg())) {
    std::string error;
    ConnectionPtr c = Connection::open(testing::settings(1), error);
    BOOST_REQUIRE_MESSAGE(c, error);
    BOOST_TEST(c->option("keepalives") == "1");
    BOOST_TEST(c->option("keepalives_idle") == "30");
    BOOST_TEST(c->option("keepalives_interval") == "10");
    BOOST_TEST(c->option("keepalives_count") == "3");
    BOOST_TEST(c->option("tcp_user_timeout") == "30000");
    ConnectSettings own = testing::settings(1);
    own.conninfo += " keepalives_idle=77 tcp_user_timeout=12345";
    c = Connection::open(own, error);
    BOOST_REQUIRE_MESSAGE(c, error);
    BOOST_TEST(c->option("keepalives_idle") == "77");  // the operator's value wins
    BOOST_TEST(c->option("tcp_user_timeout") == "12345");
    BOOST_TEST(c->option("keepalives_count") == "3");
}

BOOST_AUTO_TEST_CASE(a_live_servers_statement_timeout_keeps_the_connection, *boost::unit_test::precondition(testing::WithPg())) {
    ConnectSettings s = testing::settings(1);
    s.statementTimeout = 1s;
    std::string error;
    ConnectionPtr c = Connection::open(s, error);
    BOOST_REQUIRE_MESSAGE(c, error);
    auto t0 = Clock::now();
    QueryResult r = c->exec("SELECT pg_sleep(10)");
    // The server's own statement_timeout answers before the client deadline (the grace):
    // an ordinary 57014 error, and the connection stays usable.
    BOOST_TEST(r.failed());
    BOOST_TEST(r.sqlState == "57014");
    BOOST_TEST(!r.timedOut);
    BOOST_TEST(secondsSince(t0) < 5.0);
    BOOST_TEST(c->isOk());
    r = c->exec("SELECT 1");
    BOOST_TEST(r.ok());
}

BOOST_AUTO_TEST_CASE(pool_discards_a_timed_out_connection_and_recovers, *boost::unit_test::precondition(testing::WithPg())) {
    auto [host, port] = pgHostPort();
    FreezableProxy proxy(host, port);
    Pool pool(viaProxy(proxy, 2));
    std::atomic<int> ups{0};
    pool.setUpListener([&] { ++ups; });
    QueryResult r = pool.execute(Probe, {std::string("warm")});
    BOOST_REQUIRE_MESSAGE(r.ok(), r.error);
    BOOST_TEST(ups == 0);  // never down yet
    // Two open connections, then freeze under them.
    auto a = std::async(std::launch::async, [&] { return pool.withConnection([](Connection& c) { return c.exec("SELECT pg_sleep(0.3)"); }); });
    auto b = std::async(std::launch::async, [&] { return pool.withConnection([](Connection& c) { return c.exec("SELECT pg_sleep(0.3)"); }); });
    BOOST_REQUIRE(!a.get().failed());
    BOOST_REQUIRE(!b.get().failed());
    BOOST_TEST(pool.openConnections() == 2u);

    proxy.freeze();
    // More callers than connections: all answered, none after more than slot wait + connect
    // or deadline, and none retried on a new connection (that would be another 2 s + 1.5 s).
    auto t0 = Clock::now();
    std::vector<std::future<QueryResult>> calls;
    for (int i = 0; i < 5; ++i) {
        calls.push_back(std::async(std::launch::async, [&pool] { return pool.execute(Probe, {std::string("x")}); }));
    }
    int timedOut = 0;
    for (auto& f : calls) {
        BOOST_REQUIRE(f.wait_for(20s) == std::future_status::ready);
        QueryResult q = f.get();
        BOOST_TEST(q.failed());
        timedOut += q.timedOut ? 1 : 0;
    }
    const double took = secondsSince(t0);
    BOOST_TEST_MESSAGE("5 callers on a frozen pool of 2 answered within " << took << " s");
    BOOST_TEST(timedOut >= 2);  // the two open connections hit the deadline
    BOOST_TEST(took < 10.0);
    BOOST_TEST(pool.openConnections() == 0u);  // timed-out connections are not kept

    // Down: callers fail at once instead of each waiting out a timeout.
    t0 = Clock::now();
    r = pool.execute(Probe, {std::string("fast")});
    BOOST_TEST(r.failed());
    BOOST_TEST(r.sqlState == "08006");
    BOOST_TEST(secondsSince(t0) < 0.5);

    proxy.thaw();
    // Recovery without a restart: within connect_timeout a call connects anew and succeeds.
    t0 = Clock::now();
    r = executeUntilOk(pool, "back");
    BOOST_TEST(secondsSince(t0) < 5.0);
    BOOST_REQUIRE_MESSAGE(r.ok(), r.error);
    BOOST_TEST(r.rows[0][0].value_or("") == "back");
    BOOST_TEST(ups == 1);  // the up listener heard the recovery once (held grants go out)
}

// Review finding (cluster): the pool retries a statement whose connection broke; when the
// retry could not even connect, its 08001 replaced the first attempt's result, and a caller
// asking "may this have committed?" (the maildrop lease, the login statement) was told no,
// leaving an orphan lease that answered [IN-USE] until it lapsed.
BOOST_AUTO_TEST_CASE(a_lost_first_attempt_is_reported_after_a_failed_retry, *boost::unit_test::precondition(testing::WithPg())) {
    auto [host, port] = pgHostPort();
    FreezableProxy proxy(host, port);
    ConnectSettings s = viaProxy(proxy, 1);
    s.statementTimeout = 5s;
    Pool pool(s);
    QueryResult r = pool.execute(Probe, {std::string("warm")});
    BOOST_REQUIRE_MESSAGE(r.ok(), r.error);
    const Statement slow{"postern_test_slow", "SELECT pg_sleep(1)"};
    auto call = std::async(std::launch::async, [&] { return pool.execute(slow, {}); });
    std::this_thread::sleep_for(300ms);  // sent, not answered
    proxy.cutAndRefuse();
    r = call.get();
    BOOST_TEST(r.failed());
    BOOST_TEST(r.sqlState == "08001");  // the retry could not connect
    BOOST_TEST(r.earlierAttemptLost);
    BOOST_TEST(r.mayHaveCommitted());
    // A refusal alone never reached the server.
    QueryResult refused = QueryResult::failure("cannot connect", "08001");
    BOOST_TEST(!refused.mayHaveCommitted());
}

BOOST_AUTO_TEST_CASE(transaction_on_a_frozen_server_is_not_retried, *boost::unit_test::precondition(testing::WithPg())) {
    auto [host, port] = pgHostPort();
    FreezableProxy proxy(host, port);
    Pool pool(viaProxy(proxy, 1));
    BOOST_REQUIRE(pool.execute(Probe, {std::string("warm")}).ok());
    proxy.freeze();
    auto t0 = Clock::now();
    int calls = 0;
    QueryResult r = pool.withConnection([&](Connection& c) {
        ++calls;
        QueryResult q = c.exec("BEGIN");
        if (q.failed()) {
            if (c.isOk()) c.exec("ROLLBACK");  // what the stores do: must not wait again
            return q;
        }
        return c.exec("COMMIT");
    });
    BOOST_TEST(r.timedOut);
    BOOST_TEST(calls == 1);
    BOOST_TEST(secondsSince(t0) < 5.0);
    BOOST_TEST(pool.openConnections() == 0u);
    proxy.thaw();
    BOOST_TEST(executeUntilOk(pool, "again").ok());
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace
}  // namespace postern::pg
