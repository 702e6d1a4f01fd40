// SmtpClient and the next hop's SMTPUTF8 / REQUIRETLS / 8BITMIME offers (RFC 6531 3.4,
// RFC 8689 4.2.1, RFC 6152): what is learned from EHLO and which MAIL parameters go out.
#include "delivery/SmtpClient.h"

#include "PeerLines.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <memory>
#include <thread>
#include <unistd.h>

using namespace postern::delivery;

namespace {

// One connection; answers each command line from the EHLO text given; records the lines.
class OneShotServer {
public:
    explicit OneShotServer(std::string ehlo)
        : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)), ehlo_(std::move(ehlo)), thread_([this] { run(); }) {}
    ~OneShotServer() { join(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    std::uint16_t port() const { return socket_.address().port(); }
    std::vector<std::string> commands;
    std::string data;  // what came after DATA, dot-stuffing removed, without the final dot

private:
    void run() {
        Poco::Net::StreamSocket s = socket_.acceptConnection();
        s.setReceiveTimeout(Poco::Timespan(10, 0));
        say(s, "220 fake\r\n");
        std::string buf;
        bool data = false;
        std::string line;
        while (test::nextLine(s, buf, line)) {
            if (data) {
                if (line == ".") {
                    data = false;
                    say(s, "250 2.0.0 queued\r\n");
                } else {
                    this->data += (line.rfind(".", 0) == 0 ? line.substr(1) : line) + "\r\n";
                }
                continue;
            }
            commands.push_back(line);
            if (line.rfind("EHLO", 0) == 0) say(s, ehlo_);
            else if (line == "DATA") data = true, say(s, "354 go\r\n");
            else if (line == "QUIT") return say(s, "221 bye\r\n");
            else say(s, "250 ok\r\n");
        }
    }
    static void say(Poco::Net::StreamSocket& s, const std::string& t) { s.sendBytes(t.data(), static_cast<int>(t.size())); }
    Poco::Net::ServerSocket socket_;
    std::string ehlo_;
    std::thread thread_;
};

using test::settings;

std::string mailLine(const std::string& ehlo, bool smtpUtf8, bool requireTls, bool& offeredUtf8, bool& offeredRt) {
    char name[] = "/tmp/postern-smtpclient-ext-XXXXXX";
    int fd = ::mkstemp(name);
    ::close(fd);
    std::ofstream(name, std::ios::binary) << "Subject: gr\xc3\xbc\xc3\x9f" "e\r\n\r\nx\r\n";
    MessageData m;
    m.path = name;
    m.size = 20;
    m.eightBit = true;
    m.smtpUtf8 = smtpUtf8;
    m.requireTls = requireTls;
    OneShotServer server(ehlo);
    SmtpClient c(settings());
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr);
    BOOST_TEST_REQUIRE(r.isPositive(), r.text());
    offeredUtf8 = c.offersSmtpUtf8();
    offeredRt = c.offersRequireTls();
    BOOST_TEST(!c.tlsVerified());
    auto replies = c.send("j\xc3\xb6rg@a.test", {"\xc3\xbc@b.test"}, m);
    BOOST_TEST(replies.at(0).isPositive(), replies.at(0).text());
    c.quit();
    server.join();
    ::unlink(name);
    for (const auto& l : server.commands)
        if (l.rfind("MAIL", 0) == 0) return l;
    return {};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_client_extensions)

BOOST_AUTO_TEST_CASE(smtputf8_requiretls_and_8bitmime_go_on_when_offered) {
    bool u = false, rt = false;
    std::string mail = mailLine("250-fake\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 REQUIRETLS\r\n", true, true, u, rt);
    BOOST_TEST(u);
    BOOST_TEST(rt);
    BOOST_TEST(mail == "MAIL FROM:<j\xc3\xb6rg@a.test> BODY=8BITMIME SMTPUTF8 REQUIRETLS");
}

BOOST_AUTO_TEST_CASE(nothing_is_sent_that_was_not_offered_or_asked_for) {
    bool u = true, rt = true;
    BOOST_TEST(mailLine("250-fake\r\n250 PIPELINING\r\n", true, true, u, rt) == "MAIL FROM:<j\xc3\xb6rg@a.test>");
    BOOST_TEST(!u);
    BOOST_TEST(!rt);
    BOOST_TEST(mailLine("250-fake\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 REQUIRETLS\r\n", false, false, u, rt) ==
               "MAIL FROM:<j\xc3\xb6rg@a.test> BODY=8BITMIME");
}

BOOST_AUTO_TEST_CASE(eight_bit_mime_parts_are_converted_for_a_hop_without_8bitmime) {
    // RFC 6152 3, as Postfix: the 8bit part goes as quoted-printable, the multipart is
    // relabelled 7bit, SIZE is left out (the converted size is not known beforehand); dot
    // stuffing applies to the converted lines. The message is held in memory this time.
    const std::string body = "Content-Type: multipart/mixed; boundary=b\r\n"
                             "Content-Transfer-Encoding: 8bit\r\n\r\n"
                             "--b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                             ".gr\xc3\xbc\xc3\x9f""e\r\n--b--\r\n";
    for (const std::string ehlo : {"250-fake\r\n250-SIZE 1000000\r\n250 PIPELINING\r\n",  // convert
                                   "250-fake\r\n250-SIZE 1000000\r\n250 SMTPUTF8\r\n"}) {  // 8BITMIME implied
        const bool convert = ehlo.find("SMTPUTF8") == std::string::npos;
        MessageData m;
        m.content = std::make_shared<const std::string>(body);
        m.size = body.size();
        m.eightBit = true;
        OneShotServer server(ehlo);
        SmtpClient c(settings());
        BOOST_REQUIRE(c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr).isPositive());
        BOOST_TEST(c.send("s@a.test", {"r@b.test"}, m).at(0).isPositive());
        c.quit();
        server.join();
        const std::string mail = convert ? "MAIL FROM:<s@a.test>" : "MAIL FROM:<s@a.test> SIZE=" + std::to_string(body.size()) + " BODY=8BITMIME";
        BOOST_TEST(std::count(server.commands.begin(), server.commands.end(), mail) == 1);
        if (convert) {
            BOOST_TEST(server.data == "Content-Type: multipart/mixed; boundary=b\r\n"
                                      "Content-Transfer-Encoding: 7bit\r\n\r\n"
                                      "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                                      ".gr=C3=BC=C3=9Fe\r\n--b--\r\n");
        } else {
            BOOST_TEST(server.data == body);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
