// A live directory that answers one search with timeLimitExceeded (resultCode 3) is not a
// directory that is down: that request fails temporarily, the next ones still reach it. And a
// server marked down after a missed deadline is probed again at once, not after
// probe_interval when it was the only one (review finding: one slow search failed every login
// for seconds). A minimal LDAPv3 server on loopback: binds succeed, the root DSE search (the
// probe) succeeds, every other search ends with the result code the test sets; "frozen"
// answers nothing until it wakes (then it answers what it held, late).
#include "LdapBackend.h"
#include "LdapConfig.h"
#include "LdapServerPool.h"
#include "unit/ldap/LoopbackListener.h"

#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace postern::plugins::ldap;
namespace api = postern::plugins::api;
using Clock = std::chrono::steady_clock;

namespace {

// Reads one BER length at s[i] (short or long form); false if incomplete.
bool berLength(const std::string& s, std::size_t& i, std::size_t& len) {
    if (i >= s.size()) return false;
    unsigned char b = static_cast<unsigned char>(s[i++]);
    if (b < 0x80) {
        len = b;
        return true;
    }
    std::size_t n = b & 0x7f;
    if (n == 0 || n > 4 || i + n > s.size()) return false;
    len = 0;
    for (std::size_t k = 0; k < n; ++k) len = (len << 8) | static_cast<unsigned char>(s[i++]);
    return true;
}

class FakeDirectory {
public:
    std::atomic<bool> frozen{false};
    std::atomic<int> searchCode{3};  // timeLimitExceeded
    std::atomic<int> searches{0};

    FakeDirectory() {
        fd_ = postern::test::listenOnLoopback(port_);
        acceptor_ = std::thread([this] { acceptLoop(); });
    }
    ~FakeDirectory() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        acceptor_.join();
        std::lock_guard lock(mutex_);
        for (auto& t : sessions_) t.join();
        ::close(fd_);
    }
    std::string uri() const { return postern::test::ldapUri(port_); }

private:
    void acceptLoop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::lock_guard lock(mutex_);
            sessions_.emplace_back([this, c] { serve(c); });
        }
    }

    void reply(int c, int id, unsigned char op, int code) {
        const std::string body{'\x0a', '\x01', static_cast<char>(code), '\x04', '\x00', '\x04', '\x00'};
        std::string msg{'\x02', '\x01', static_cast<char>(id), static_cast<char>(op), static_cast<char>(body.size())};
        msg += body;
        std::string out{'\x30', static_cast<char>(msg.size())};
        out += msg;
        (void)!::send(c, out.data(), out.size(), MSG_NOSIGNAL);
    }

    void serve(int c) {
        std::vector<Held> held;
        std::string in;
        char buf[4096];
        bool open = true;
        while (!stop_ && open) {
            if (!frozen && !held.empty()) {
                for (const auto& h : held) answer(c, h.id, h.op, h.m, h.k);
                held.clear();
            }
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            in.append(buf, static_cast<std::size_t>(n));
            for (;;) {
                std::size_t i = 1, len = 0;
                if (in.empty() || !berLength(in, i, len) || i + len > in.size()) break;
                const std::string m = in.substr(i, len);
                in.erase(0, i + len);
                // messageID INTEGER, then the protocolOp
                std::size_t j = 1, idLen = 0;
                if (m.size() < 3 || m[0] != '\x02' || !berLength(m, j, idLen) || j + idLen >= m.size()) continue;
                int id = 0;
                for (std::size_t k = 0; k < idLen; ++k) id = (id << 8) | static_cast<unsigned char>(m[j + k]);
                std::size_t k = j + idLen;
                const unsigned char op = static_cast<unsigned char>(m[k++]);
                if (frozen) {  // a directory that has stopped answering: answers when it wakes
                    held.push_back({id, op, m, k});
                    continue;
                }
                if (!answer(c, id, op, m, k)) {
                    open = false;
                    break;
                }
            }
        }
        ::close(c);
    }

    struct Held {
        int id;
        unsigned char op;
        std::string m;
        std::size_t k;
    };

    // Returns false for an unbind (the caller closes).
    bool answer(int c, int id, unsigned char op, const std::string& m, std::size_t k) {
        if (op == 0x60) {
            reply(c, id, 0x61, 0);  // bindResponse: success
        } else if (op == 0x63) {
            std::size_t opLen = 0, b = 0;
            berLength(m, k, opLen);
            std::size_t baseLen = 0;
            const bool rootDse = m[k] == '\x04' && (b = k + 1, berLength(m, b, baseLen)) && baseLen == 0;
            if (!rootDse) ++searches;
            reply(c, id, 0x65, rootDse ? 0 : searchCode.load());  // searchResDone
        } else if (op == 0x42) {
            return false;  // unbind
        }
        return true;
    }

    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::mutex mutex_;
    std::vector<std::thread> sessions_;
};

// Deadlines of 300ms; probe_interval 60s: only a wake-up can bring the server back in time.
std::map<std::string, std::string> config(const std::string& uri) { return postern::test::shortDeadlineConfig(uri); }

}  // namespace

BOOST_AUTO_TEST_SUITE(ldap_time_limit)

BOOST_AUTO_TEST_CASE(timeLimitExceededIsAnAnswerNotAnOutage) {
    FakeDirectory dir;
    LdapBackend backend(LdapConfig::fromMap(config(dir.uri())));
    for (int i = 0; i < 3; ++i) {
        auto a = backend.authenticate("alice@example.test", "pw", "smtp", "127.0.0.1");
        BOOST_TEST((a.status == api::Status::TempFail), a.detail);
        BOOST_TEST(a.detail.find("no LDAP server is up") == std::string::npos, a.detail);
    }
    BOOST_TEST(dir.searches.load() == 3);  // every request reached the directory
    dir.searchCode = 32;                   // noSuchObject: a definite "no such user"
    BOOST_TEST((backend.authenticate("alice@example.test", "pw", "smtp", "").status != api::Status::Ok));
    BOOST_TEST((backend.probe().status == api::Status::Ok));
}

BOOST_AUTO_TEST_CASE(aSlowServerSendsTheRequestToTheNextOneAndStaysUp) {
    FakeDirectory slow, fast;
    fast.searchCode = 32;  // noSuchObject: an answer (no entry under the base)
    auto cfg = config(slow.uri() + " " + fast.uri());
    LdapBackend backend(LdapConfig::fromMap(cfg));
    for (int i = 1; i <= 2; ++i) {
        auto a = backend.authenticate("alice@example.test", "pw", "smtp", "");
        BOOST_TEST(a.detail.find(fast.uri()) != std::string::npos, a.detail);  // the second server's answer
        BOOST_TEST(slow.searches.load() == i);  // asked first each time: still up
        BOOST_TEST(fast.searches.load() == i);
    }
}

// An operation that throws (bad_alloc copying a large result) frees its connection's slot:
// before, each such throw kept a slot counted, and after pool_size of them every request
// waited for a slot that never came ("all connections busy") until a restart.
BOOST_AUTO_TEST_CASE(anOperationThatThrowsFreesItsSlot) {
    FakeDirectory dir;
    const LdapConfig cfg = LdapConfig::fromMap(config(dir.uri()));
    LdapServerPool pool(cfg);
    std::string uri;
    for (int i = 0; i < cfg.poolSize + 2; ++i)
        BOOST_CHECK_THROW(pool.run([](LdapConnection&) -> LdapResult { throw std::bad_alloc(); }, uri), std::bad_alloc);
    const LdapResult r = pool.run([](LdapConnection&) { return LdapResult{}; }, uri);
    BOOST_TEST(r.ok(), r.text);
    BOOST_TEST(pool.isUp(0));
}

BOOST_AUTO_TEST_CASE(aServerMarkedDownIsProbedAgainAtOnce) {
    FakeDirectory dir;
    LdapBackend backend(LdapConfig::fromMap(config(dir.uri())));
    dir.frozen = true;
    auto a = backend.authenticate("alice@example.test", "pw", "smtp", "");
    BOOST_TEST((a.status == api::Status::TempFail), a.detail);  // missed its deadline: marked down
    dir.frozen = false;
    // probe_interval is 60 s: back within seconds only because marking it down woke the probe
    // (whose first attempt may still meet the frozen connection and time out once).
    const auto t0 = Clock::now();
    bool reached = false;
    while (!reached && Clock::now() - t0 < std::chrono::seconds(5)) {
        const int before = dir.searches.load();
        backend.authenticate("alice@example.test", "pw", "smtp", "");
        reached = dir.searches.load() > before;
        if (!reached) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    BOOST_TEST(reached);
}

BOOST_AUTO_TEST_SUITE_END()
