// SmtpClient against a scripted fake server on loopback (real sockets, no DNS).
#include "delivery/MessageSource.h"
#include "delivery/SmtpClient.h"

#include "PeerLines.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <unistd.h>

using namespace postern::delivery;

BOOST_AUTO_TEST_SUITE(smtp_client)

namespace {

// One connection: greeting, then each command line is answered by `respond` (an empty
// answer = no reply; "<close>" = drop the connection). After a 354 the data up to the dot
// is collected and "." is passed to respond. With holdUntilData, replies to MAIL/RCPT
// are only sent once DATA has arrived: a client that does not pipeline would time out.
class FakeServer {
public:
    using Respond = std::function<std::string(const std::string&)>;
    FakeServer(std::string greeting, Respond respond, bool holdUntilData = false)
        : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)), greeting_(std::move(greeting)),
          respond_(std::move(respond)), hold_(holdUntilData) {
        thread_ = std::thread([this] { run(); });
    }
    ~FakeServer() {
        if (thread_.joinable()) thread_.join();
    }
    std::uint16_t port() const { return socket_.address().port(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    std::vector<std::string> commands;
    std::string data;

private:
    void run() {
        Poco::Net::StreamSocket s = socket_.acceptConnection();
        s.setReceiveTimeout(Poco::Timespan(10, 0));
        send(s, greeting_);
        std::string buf, held;
        bool inData = false;
        std::string line;
        while (test::nextLine(s, buf, line)) {
            if (inData) {
                if (line != ".") {
                    data += line + "\r\n";
                    continue;
                }
                inData = false;
            } else {
                commands.push_back(line);
            }
            std::string reply = respond_(inData ? line : line);
            if (reply == "<close>") return;
            bool isData = line == "DATA";
            if (hold_ && !isData && (line.rfind("MAIL", 0) == 0 || line.rfind("RCPT", 0) == 0)) {
                held += reply;
                continue;
            }
            if (isData) {
                reply = held + reply;
                held.clear();
                if (reply.find("354") != std::string::npos) inData = true;
            }
            if (!reply.empty()) send(s, reply);
            if (line == "QUIT") return;
        }
    }
    static void send(Poco::Net::StreamSocket& s, const std::string& text) { s.sendBytes(text.data(), static_cast<int>(text.size())); }

    Poco::Net::ServerSocket socket_;
    std::string greeting_;
    Respond respond_;
    bool hold_;
    std::thread thread_;
};

struct TempMessage {
    explicit TempMessage(const std::string& content) {
        char name[] = "/tmp/postern-smtpclient-XXXXXX";
        int fd = ::mkstemp(name);
        ::close(fd);
        path = name;
        std::ofstream(path, std::ios::binary) << content;
        message.path = path;
        message.size = content.size();
        message.eightBit = content.find('\xc3') != std::string::npos;
    }
    ~TempMessage() { ::unlink(path.c_str()); }
    std::string path;
    MessageData message;
};

using test::settings;

const char* Ehlo = "250-fake.example\r\n250-PIPELINING\r\n250-SIZE 100000\r\n250 8BITMIME\r\n";

}  // namespace

BOOST_AUTO_TEST_CASE(pipelined_transaction_with_size_8bitmime_and_dot_stuffing) {
    for (bool loaded : {false, true}) {  // streamed from the file, then from memory
        FakeServer server("220 fake ESMTP\r\n", [](const std::string& l) -> std::string {
            if (l.rfind("EHLO", 0) == 0) return Ehlo;
            if (l.rfind("MAIL", 0) == 0) return "250 2.1.0 ok\r\n";
            if (l == "RCPT TO:<bad@b.test>") return "550 5.1.1 no such user\r\n";
            if (l.rfind("RCPT", 0) == 0) return "250 2.1.5 ok\r\n";
            if (l == "DATA") return "354 go\r\n";
            if (l == ".") return "250 2.0.0 queued as 42\r\n";
            if (l == "QUIT") return "221 bye\r\n";
            return "500 what\r\n";
        }, /*holdUntilData=*/true);
        TempMessage m("Subject: gr\xc3\xbc\xc3\x9f""e\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n");
        if (loaded) {  // as the delivery agent does: read once, the file is not needed again
            BOOST_REQUIRE(loadMessage(m.path, m.message.content, m.message.size));
            ::unlink(m.path.c_str());
        }
        SmtpClient c(settings());
        SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake.example", TlsPolicy::None, nullptr);
        BOOST_TEST_REQUIRE(r.isPositive(), r.text());
        auto replies = c.send("s@a.test", {"good@b.test", "bad@b.test"}, m.message);
        BOOST_TEST_REQUIRE(replies.size() == 2u);
        BOOST_TEST(replies[0].text() == "250 2.0.0 queued as 42");
        BOOST_TEST(replies[1].text() == "550 5.1.1 no such user");
        BOOST_TEST(c.relay() == "fake.example[127.0.0.1]:" + std::to_string(server.port()));
        c.quit();
        server.join();
        std::vector<std::string> want = {"EHLO mail.example.test",
                                         "MAIL FROM:<s@a.test> SIZE=" + std::to_string(m.message.size) + " BODY=8BITMIME",
                                         "RCPT TO:<good@b.test>", "RCPT TO:<bad@b.test>", "DATA", "QUIT"};
        BOOST_TEST(server.commands == want, boost::test_tools::per_element());
        // RFC 5321 4.5.2: leading dots doubled on the wire (the fake server does not unstuff).
        BOOST_TEST(server.data == "Subject: gr\xc3\xbc\xc3\x9f""e\r\n\r\n..leading dot\r\n...two\r\n..\r\nend\r\n");
    }
}

BOOST_AUTO_TEST_CASE(helo_fallback_without_extensions_one_command_at_a_time) {
    FakeServer server("220 old\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "502 5.5.1 what is EHLO\r\n";
        if (l.rfind("HELO", 0) == 0) return "250 old\r\n";
        if (l.rfind("MAIL", 0) == 0) return "250 ok\r\n";
        if (l.rfind("RCPT", 0) == 0) return "250 ok\r\n";
        if (l == "DATA") return "354 go\r\n";
        if (l == ".") return "250 ok\r\n";
        if (l == "RSET") return "250 ok\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "500 what\r\n";
    });
    TempMessage m("Subject: x\r\n\r\nno final newline");
    SmtpClient c(settings());
    BOOST_TEST_REQUIRE(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "old", TlsPolicy::May, nullptr).isPositive());
    auto first = c.send("", {"a@b.test"}, m.message);
    BOOST_TEST(first.at(0).code == 250);
    // The connection is reused for a second message after RSET.
    BOOST_TEST_REQUIRE(c.reset());
    auto second = c.send("x@a.test", {"c@b.test"}, m.message);
    BOOST_TEST(second.at(0).code == 250);
    c.quit();
    server.join();
    std::vector<std::string> want = {"EHLO mail.example.test", "HELO mail.example.test", "MAIL FROM:<>",
                                     "RCPT TO:<a@b.test>", "DATA", "RSET", "MAIL FROM:<x@a.test>",
                                     "RCPT TO:<c@b.test>", "DATA", "QUIT"};
    BOOST_TEST(server.commands == want, boost::test_tools::per_element());
    // A message without a final CRLF gets one before the dot.
    BOOST_TEST(server.data == "Subject: x\r\n\r\nno final newline\r\nSubject: x\r\n\r\nno final newline\r\n");
}

// A server that names itself as we do in its EHLO reply (in any case) is this node or one of
// its cluster: a mail loop. Nothing more is said to it (no STARTTLS, no AUTH, no MAIL).
// Postern's own name in the greeting is not enough (a proxy may greet for a host).
BOOST_AUTO_TEST_CASE(a_server_that_replies_to_ehlo_with_our_own_name_is_a_loop) {
    for (bool helo : {false, true}) {
        FakeServer server("220 mail.example.test ESMTP\r\n", [helo](const std::string& l) -> std::string {
            if (l.rfind("EHLO", 0) == 0)
                return helo ? "502 5.5.1 no\r\n" : "250-MAIL.Example.TEST hello\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";
            if (l.rfind("HELO", 0) == 0) return "250 mail.example.test\r\n";
            if (l == "QUIT") return "221 bye\r\n";
            return "500 what\r\n";
        });
        SmtpClient c(settings());
        c.setLoopCheck(true);  // MX delivery
        const Credentials creds{"user", "secret"};
        SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "mx.b.test", TlsPolicy::May, &creds);
        BOOST_TEST(!r.isPositive());
        BOOST_TEST(c.loopsBack());
        BOOST_TEST(r.text().find("replied to EHLO with my own hostname mail.example.test") != std::string::npos, r.text());
        server.join();
        std::vector<std::string> want = {"EHLO mail.example.test"};
        if (helo) want.push_back("HELO mail.example.test");
        want.push_back("QUIT");
        BOOST_TEST(server.commands == want, boost::test_tools::per_element());
    }
    // Our name in the greeting only, or as a longer name's prefix: not a loop. Nor our name
    // with the check off (a relayhost or transport: an MTA beside us may carry our name).
    for (const char* name : {"mail.example.test.other", "mail.example.test"}) {
        FakeServer server("220 mail.example.test ESMTP\r\n", [name](const std::string& l) -> std::string {
            if (l.rfind("EHLO", 0) == 0) return "250 " + std::string(name) + " hi\r\n";
            if (l == "QUIT") return "221 bye\r\n";
            return "500 what\r\n";
        });
        SmtpClient c(settings());
        c.setLoopCheck(std::string(name) != "mail.example.test");
        BOOST_TEST(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "mx.b.test", TlsPolicy::None, nullptr)
                       .isPositive(), name);
        BOOST_TEST(!c.loopsBack());
        c.quit();
    }
}

// Where the policy authenticates the server (verify, DANE), a plaintext EHLO reply with our
// name (which anyone on the path can write) is no loop: a permanent 5.4.6 there must rest on
// the reply that came over the authenticated channel. Here STARTTLS is refused, so the
// attempt fails temporarily (the TLS requirement), not as a loop.
BOOST_AUTO_TEST_CASE(an_unauthenticated_ehlo_reply_is_no_loop_where_the_policy_authenticates) {
    FakeServer server("220 mx.b.test ESMTP\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250-mail.example.test hello\r\n250 STARTTLS\r\n";
        if (l == "STARTTLS") return "454 4.7.0 not now\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "500 what\r\n";
    });
    SmtpClient c(settings());
    c.setLoopCheck(true);
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "mx.b.test", TlsPolicy::Verify, nullptr);
    BOOST_TEST(!r.isPositive());
    BOOST_TEST(!c.loopsBack());
    BOOST_TEST(c.tlsRequirementFailed());
    server.join();
    const std::vector<std::string> want = {"EHLO mail.example.test", "STARTTLS", "QUIT"};
    BOOST_TEST(server.commands == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(message_over_the_announced_size_is_not_sent) {
    FakeServer server("220 fake\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250-fake\r\n250 SIZE 10\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "250 ok\r\n";
    });
    TempMessage m("Subject: far too big for ten octets\r\n\r\nbody\r\n");
    SmtpClient c(settings());
    BOOST_TEST_REQUIRE(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr).isPositive());
    auto replies = c.send("s@a.test", {"r@b.test"}, m.message);
    BOOST_TEST(replies.at(0).code == 552);
    BOOST_TEST(replies.at(0).status() == "5.3.4");
    c.quit();
    server.join();
    std::vector<std::string> want = {"EHLO mail.example.test", "QUIT"};
    BOOST_TEST(server.commands == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(connection_lost_after_the_dot_is_temporary_for_everyone) {
    FakeServer server("220 fake\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250 fake\r\n";
        if (l == "DATA") return "354 go\r\n";
        if (l == ".") return "<close>";
        return "250 ok\r\n";
    });
    TempMessage m("Subject: x\r\n\r\nbody\r\n");
    SmtpClient c(settings());
    BOOST_TEST_REQUIRE(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr).isPositive());
    auto replies = c.send("s@a.test", {"r1@b.test", "r2@b.test"}, m.message);
    for (const auto& r : replies) {
        BOOST_TEST(r.code == 0);
        BOOST_TEST(r.isTemporary());
    }
    BOOST_TEST(!c.usable());
    server.join();
}

// RFC 5321 4.3.2: DATA goes on with 354 only, MAIL/RCPT and the end of data succeed with 2xx
// only. A server out of step (a 250 to DATA: the body was never sent; a 354 where a 2xx was
// due) is a protocol error: every recipient is retried later, none counts as delivered.
BOOST_AUTO_TEST_CASE(replies_out_of_sequence_are_temporary_never_delivered) {
    struct Case {
        const char* name;
        bool pipelining;
        std::string rcpt, data, dot;
    };
    const Case cases[] = {
        {"250 to DATA, pipelined", true, "250 ok\r\n", "250 2.0.0 ok\r\n", "250 ok\r\n"},
        {"250 to DATA, one at a time", false, "250 ok\r\n", "250 2.0.0 ok\r\n", "250 ok\r\n"},
        {"354 to RCPT", false, "354 go\r\n", "354 go\r\n", "250 ok\r\n"},
        {"354 to the dot", true, "250 ok\r\n", "354 go\r\n", "354 more\r\n"},
    };
    for (const auto& k : cases) {
        BOOST_TEST_CONTEXT(k.name) {
            FakeServer server("220 fake\r\n", [&k](const std::string& l) -> std::string {
                if (l.rfind("EHLO", 0) == 0) return k.pipelining ? "250-fake\r\n250 PIPELINING\r\n" : "250 fake\r\n";
                if (l.rfind("MAIL", 0) == 0) return "250 ok\r\n";
                if (l.rfind("RCPT", 0) == 0) return k.rcpt;
                if (l == "DATA") return k.data;
                if (l == ".") return k.dot;
                if (l == "QUIT") return "221 bye\r\n";
                return "500 what\r\n";
            });
            TempMessage m("Subject: x\r\n\r\nbody\r\n");
            SmtpClient c(settings());
            BOOST_TEST_REQUIRE(
                c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr).isPositive());
            auto replies = c.send("s@a.test", {"r1@b.test", "r2@b.test"}, m.message);
            BOOST_TEST_REQUIRE(replies.size() == 2u);
            for (const auto& r : replies) {
                BOOST_TEST(!r.isPositive(), r.text());
                BOOST_TEST(r.isTemporary(), r.text());
                BOOST_TEST(r.text().find("protocol error") != std::string::npos, r.text());
            }
            BOOST_TEST(!c.usable());
            server.join();
        }
    }
}

// One command at a time, the connection drops at the second RCPT: the first recipient's 550
// stays a 550 (before, every recipient got "lost connection" and the refused one was retried
// for days against the same answer); the other one is a temporary failure. DATA and BDAT.
BOOST_AUTO_TEST_CASE(refusal_before_a_lost_connection_is_kept) {
    for (bool chunking : {false, true}) {
        BOOST_TEST_CONTEXT("chunking " << chunking) {
            FakeServer server("220 fake\r\n", [chunking](const std::string& l) -> std::string {
                if (l.rfind("EHLO", 0) == 0) return chunking ? "250-fake\r\n250 CHUNKING\r\n" : "250 fake\r\n";
                if (l.rfind("MAIL", 0) == 0) return "250 ok\r\n";
                if (l == "RCPT TO:<gone@b.test>") return "550 5.1.1 no such user\r\n";
                if (l.rfind("RCPT", 0) == 0) return "<close>";
                return "500 what\r\n";
            });
            TempMessage m("Subject: x\r\n\r\nbody\r\n");
            SmtpClient c(settings());
            BOOST_TEST_REQUIRE(
                c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr).isPositive());
            auto replies = c.send("s@a.test", {"gone@b.test", "other@b.test"}, m.message);
            BOOST_TEST_REQUIRE(replies.size() == 2u);
            BOOST_TEST(replies[0].text() == "550 5.1.1 no such user");
            BOOST_TEST(replies[1].isTemporary(), replies[1].text());
            server.join();
        }
    }
}

BOOST_AUTO_TEST_CASE(encrypt_policy_refuses_a_server_without_starttls) {
    FakeServer server("220 fake\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250-fake\r\n250 PIPELINING\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "250 ok\r\n";
    });
    SmtpClient c(settings());
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::Encrypt, nullptr);
    BOOST_TEST(!r.isPositive());
    BOOST_TEST(r.isTemporary());
    BOOST_TEST(r.text().find("STARTTLS is not offered") != std::string::npos, r.text());
    server.join();
    std::vector<std::string> want = {"EHLO mail.example.test", "QUIT"};
    BOOST_TEST(server.commands == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(credentials_are_never_sent_in_clear) {
    FakeServer server("220 fake\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250-fake\r\n250 AUTH PLAIN LOGIN\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "250 ok\r\n";
    });
    Credentials cred{"user", "secret"};
    SmtpClient c(settings());
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::May, &cred);
    BOOST_TEST(!r.isPositive());
    server.join();
    for (const auto& cmd : server.commands) BOOST_TEST(cmd.rfind("AUTH", 0) != 0, cmd);
}

BOOST_AUTO_TEST_CASE(auth_plain_when_tls_policy_is_none) {
    FakeServer server("220 fake\r\n", [](const std::string& l) -> std::string {
        if (l.rfind("EHLO", 0) == 0) return "250-fake\r\n250 AUTH LOGIN PLAIN\r\n";
        if (l.rfind("AUTH PLAIN ", 0) == 0) return "235 2.7.0 ok\r\n";
        if (l == "QUIT") return "221 bye\r\n";
        return "500 no\r\n";
    });
    Credentials cred{"user", "secret"};
    SmtpClient c(settings());
    BOOST_TEST(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, &cred).isPositive());
    c.quit();
    server.join();
    BOOST_TEST_REQUIRE(server.commands.size() == 3u);
    BOOST_TEST(server.commands[1] == "AUTH PLAIN AHVzZXIAc2VjcmV0");  // base64("\0user\0secret")
}

BOOST_AUTO_TEST_CASE(refused_connection_is_a_local_temporary_failure) {
    std::uint16_t port;
    {
        Poco::Net::ServerSocket s(Poco::Net::SocketAddress("127.0.0.1", 0));
        port = s.address().port();
    }
    SmtpClient c(settings());
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", port), "down", TlsPolicy::May, nullptr);
    BOOST_TEST(r.code == 0);
    BOOST_TEST(r.isTemporary());
    BOOST_TEST(r.text().find("connect to down[127.0.0.1]") == 0, r.text());
}

BOOST_AUTO_TEST_SUITE_END()
