// PolicyClient against a real loopback policy server (a thread in this test): connection
// reuse, request_limit, a server that is down, one that never answers (timeout), one that
// closes pooled connections (stale retry), and broken answers.
#include "policyd/PolicyClient.h"
#include "policyd/PolicyProtocol.h"

#include <boost/test/unit_test.hpp>

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace postern::policyd;
using namespace std::chrono_literals;

namespace {

// Answers every request (read up to its empty line) with `reply`; counts connections.
class FakePolicyServer {
public:
    enum class Mode { Answer, Silent, CloseAfterReply };

    explicit FakePolicyServer(std::string reply, Mode mode = Mode::Answer,
                              const Poco::Net::SocketAddress& at = Poco::Net::SocketAddress("127.0.0.1", 0))
        : reply_(std::move(reply)), mode_(mode), server_(at) {
        server_.setReceiveTimeout(Poco::Timespan(0, 100'000));
        acceptor_ = std::thread([this] { acceptLoop(); });
    }
    ~FakePolicyServer() {
        stop_ = true;
        acceptor_.join();
        for (auto& t : workers_) t.join();
    }
    std::uint16_t port() const { return server_.address().port(); }
    int connections() const { return connections_.load(); }
    int requests() const { return requests_.load(); }

private:
    void acceptLoop() {
        while (!stop_) {
            Poco::Net::StreamSocket s;
            try {
                s = server_.acceptConnection();
            } catch (...) {
                continue;  // poll timeout: check stop_
            }
            ++connections_;
            std::lock_guard lock(mutex_);
            workers_.emplace_back([this, s]() mutable { serve(s); });
        }
    }
    void serve(Poco::Net::StreamSocket s) {
        s.setReceiveTimeout(Poco::Timespan(0, 100'000));
        std::string buf;
        char chunk[1024];
        while (!stop_) {
            int n = 0;
            try {
                n = s.receiveBytes(chunk, sizeof chunk);
            } catch (...) {
                continue;
            }
            if (n <= 0) return;
            buf.append(chunk, static_cast<std::size_t>(n));
            std::size_t len;
            while ((len = responseLength(buf)) != 0) {  // same framing as a request
                buf.erase(0, len);
                ++requests_;
                if (mode_ == Mode::Silent) continue;
                s.sendBytes(reply_.data(), static_cast<int>(reply_.size()));
                if (mode_ == Mode::CloseAfterReply) {
                    s.close();
                    return;
                }
            }
        }
    }

    std::string reply_;
    Mode mode_;
    Poco::Net::ServerSocket server_;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::atomic<int> requests_{0};
    std::mutex mutex_;
    std::vector<std::thread> workers_;
    std::thread acceptor_;
};

// The pool behaviour these tests rely on, as the shipped policy.* values (PolicyClientSettings
// has no defaults of its own: PolicyDelegation::fromConfig fills it from the keys); the
// endpoint is the caller's.
PolicyClientSettings testSettings(std::chrono::milliseconds timeout = 2000ms) {
    PolicyClientSettings s;
    s.timeout = timeout;
    s.maxIdle = 300s;
    s.maxTtl = 1000s;
    s.requestLimit = 0;
    s.tryLimit = 2;
    s.poolSize = 8;
    return s;
}

PolicyClientSettings settingsFor(std::uint16_t port, std::chrono::milliseconds timeout = 2000ms) {
    PolicyClientSettings s = testSettings(timeout);
    s.endpoint.kind = PolicyEndpoint::Kind::Inet;
    s.endpoint.host = "127.0.0.1";
    s.endpoint.port = port;
    return s;
}

const std::string Request = formatRequest({{"request", "smtpd_access_policy"}, {"recipient", "a@b"}});

}  // namespace

BOOST_AUTO_TEST_SUITE(policy_client)

BOOST_AUTO_TEST_CASE(one_connection_serves_many_requests) {
    FakePolicyServer server("action=DUNNO\n\n");
    PolicyClient client(settingsFor(server.port()));
    for (int i = 0; i < 5; ++i) {
        QueryResult r = client.query(Request);
        BOOST_REQUIRE_MESSAGE(r.ok, r.error);
        BOOST_TEST(r.response == "action=DUNNO\n\n");
    }
    BOOST_TEST(client.connectionsOpened() == 1u);
    BOOST_TEST(server.connections() == 1);
    BOOST_TEST(server.requests() == 5);
    BOOST_TEST(client.idleConnections() == 1u);
}

BOOST_AUTO_TEST_CASE(unix_domain_socket) {
    std::string path = "/tmp/postern-policyd-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    {
        FakePolicyServer server("action=REJECT no\n\n", FakePolicyServer::Mode::Answer,
                                Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path));
        std::string error;
        auto endpoint = PolicyEndpoint::parse("unix:" + path, error);
        BOOST_REQUIRE(endpoint.has_value());
        PolicyClientSettings s = testSettings();
        s.endpoint = *endpoint;
        PolicyClient client(s);
        for (int i = 0; i < 3; ++i) {
            QueryResult r = client.query(Request);
            BOOST_REQUIRE_MESSAGE(r.ok, r.error);
            BOOST_TEST(r.response == "action=REJECT no\n\n");
        }
        BOOST_TEST(server.connections() == 1);
    }
    ::unlink(path.c_str());
}

BOOST_AUTO_TEST_CASE(concurrent_queries_use_their_own_connections) {
    FakePolicyServer server("action=OK\n\n");
    PolicyClientSettings s = settingsFor(server.port());
    s.poolSize = 2;
    PolicyClient client(s);
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 20; ++i)
                if (client.query(Request).ok) ++ok;
        });
    for (auto& t : threads) t.join();
    BOOST_TEST(ok.load() == 120);
    BOOST_TEST(server.requests() == 120);
    BOOST_TEST(client.idleConnections() <= 2u);
}

BOOST_AUTO_TEST_CASE(request_limit_and_ttl_close_connections) {
    FakePolicyServer server("action=DUNNO\n\n");
    PolicyClientSettings s = settingsFor(server.port());
    s.requestLimit = 2;
    PolicyClient client(s);
    for (int i = 0; i < 5; ++i) BOOST_REQUIRE(client.query(Request).ok);
    BOOST_TEST(client.connectionsOpened() == 3u);  // 2 + 2 + 1

    FakePolicyServer server2("action=DUNNO\n\n");
    PolicyClientSettings s2 = settingsFor(server2.port());
    s2.maxIdle = 1ms;
    PolicyClient idle(s2);
    BOOST_REQUIRE(idle.query(Request).ok);
    std::this_thread::sleep_for(20ms);  // past max_idle (a bound being exceeded, not a wait for a condition)
    BOOST_REQUIRE(idle.query(Request).ok);
    BOOST_TEST(idle.connectionsOpened() == 2u);
}

BOOST_AUTO_TEST_CASE(server_down_fails_fast_after_try_limit) {
    std::uint16_t port;
    {
        Poco::Net::ServerSocket probe(Poco::Net::SocketAddress("127.0.0.1", 0));
        port = probe.address().port();
    }  // closed: nothing listens there now
    PolicyClient client(settingsFor(port, 5000ms));
    auto start = std::chrono::steady_clock::now();
    QueryResult r = client.query(Request);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!r.ok);
    BOOST_TEST(!r.timedOut);
    BOOST_TEST(r.tries == 2u);
    BOOST_TEST(r.error.find("connect") != std::string::npos);
    BOOST_TEST(took < 4s);
}

BOOST_AUTO_TEST_CASE(silent_server_times_out_within_the_deadline) {
    FakePolicyServer server("", FakePolicyServer::Mode::Silent);
    PolicyClient client(settingsFor(server.port(), 400ms));
    auto start = std::chrono::steady_clock::now();
    QueryResult r = client.query(Request);
    auto took = std::chrono::steady_clock::now() - start;
    BOOST_TEST(!r.ok);
    BOOST_TEST(r.timedOut);
    BOOST_TEST(took >= 390ms);
    BOOST_TEST(took < 3s);
    BOOST_TEST(client.idleConnections() == 0u);  // a timed-out connection is never reused
}

BOOST_AUTO_TEST_CASE(stale_pooled_connection_is_retried_on_a_new_one) {
    FakePolicyServer server("action=DUNNO\n\n", FakePolicyServer::Mode::CloseAfterReply);
    PolicyClientSettings s = settingsFor(server.port());
    s.tryLimit = 1;  // the stale retry is not counted as a try
    PolicyClient client(s);
    for (int i = 0; i < 3; ++i) {
        QueryResult r = client.query(Request);
        BOOST_REQUIRE_MESSAGE(r.ok, r.error);
    }
    BOOST_TEST(server.connections() == 3);
}

BOOST_AUTO_TEST_CASE(broken_answers_are_errors_and_not_reused) {
    {
        FakePolicyServer server("action=DUNNO\n\naction=OK\n\n");  // two answers to one request
        PolicyClient client(settingsFor(server.port()));
        QueryResult r = client.query(Request);
        BOOST_TEST(!r.ok);
        BOOST_TEST(r.error == "trailing data");
        BOOST_TEST(client.idleConnections() == 0u);
    }
    {
        FakePolicyServer server("action=" + std::string(MaxResponseBytes, 'x') + "\n\n");
        PolicyClient client(settingsFor(server.port()));
        QueryResult r = client.query(Request);
        BOOST_TEST(!r.ok);
        BOOST_TEST(r.error == "oversized");
    }
}

BOOST_AUTO_TEST_SUITE_END()
