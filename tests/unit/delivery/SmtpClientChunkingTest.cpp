// SmtpClient's CHUNKING/BINARYMIME path (RFC 3030) against a scripted BDAT-speaking fake
// server on loopback: chunks carry the file unchanged, BODY=BINARYMIME only for binary
// content, 5.6.3 when a binary message cannot be sent.
#include "delivery/MessageSource.h"
#include "delivery/MimeDowngrade.h"
#include "delivery/SmtpClient.h"

#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <fstream>
#include <thread>
#include <unistd.h>

using namespace postern::delivery;

BOOST_AUTO_TEST_SUITE(smtp_client_chunking)

namespace {

// Answers EHLO with `ehlo`, MAIL/RCPT with 250 and every BDAT with 250 after reading its
// octets (the chunk numbered refuseChunk, from 1, gets 552 instead; then 503 as a real server).
class BdatServer {
public:
    BdatServer(std::string ehlo, int refuseChunk = 0)
        : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)), ehlo_(std::move(ehlo)), refuse_(refuseChunk) {
        thread_ = std::thread([this] { run(); });
    }
    ~BdatServer() { join(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    std::uint16_t port() const { return socket_.address().port(); }
    std::vector<std::string> commands;
    std::string content;  // every accepted chunk's octets, in order

private:
    bool fill(Poco::Net::StreamSocket& s) {
        char chunk[8192];
        int n = 0;
        try {
            n = s.receiveBytes(chunk, sizeof chunk);
        } catch (...) {
        }
        if (n <= 0) return false;
        buf_.append(chunk, static_cast<std::size_t>(n));
        return true;
    }
    void run() {
        Poco::Net::StreamSocket s = socket_.acceptConnection();
        s.setReceiveTimeout(Poco::Timespan(10, 0));
        say(s, "220 fake ESMTP\r\n");
        int chunks = 0;
        bool failed = false;
        while (true) {
            auto nl = buf_.find("\r\n");
            if (nl == std::string::npos) {
                if (!fill(s)) return;
                continue;
            }
            std::string line = buf_.substr(0, nl);
            buf_.erase(0, nl + 2);
            commands.push_back(line);
            if (line.rfind("EHLO", 0) == 0) say(s, ehlo_);
            else if (line.rfind("MAIL", 0) == 0 || line.rfind("RCPT", 0) == 0 || line == "RSET") say(s, "250 2.0.0 ok\r\n");
            else if (line.rfind("BDAT ", 0) == 0) {
                std::size_t n = std::stoul(line.substr(5));
                bool last = line.find(" LAST") != std::string::npos;
                while (buf_.size() < n)
                    if (!fill(s)) return;
                std::string octets = buf_.substr(0, n);
                buf_.erase(0, n);
                ++chunks;
                if (failed) say(s, "503 5.5.1 no transaction\r\n");
                else if (chunks == refuse_) {
                    failed = true;
                    say(s, "552 5.3.4 too big\r\n");
                } else {
                    content += octets;
                    say(s, last ? "250 2.0.0 queued as 7\r\n" : "250 2.0.0 chunk ok\r\n");
                }
            } else if (line == "QUIT") {
                say(s, "221 bye\r\n");
                return;
            } else {
                say(s, "500 5.5.1 unexpected\r\n");
            }
        }
    }
    static void say(Poco::Net::StreamSocket& s, const std::string& t) { s.sendBytes(t.data(), static_cast<int>(t.size())); }

    Poco::Net::ServerSocket socket_;
    std::string ehlo_;
    int refuse_;
    std::string buf_;
    std::thread thread_;
};

struct TempMessage {
    explicit TempMessage(const std::string& content) {
        char name[] = "/tmp/postern-chunking-XXXXXX";
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

ClientSettings settings() {
    ClientSettings s;
    s.heloName = "mail.example.test";
    s.connectTimeout = Millis(2000);
    s.greetingTimeout = s.mailTimeout = s.rcptTimeout = s.dataTimeout = s.dataBlockTimeout = s.dataDoneTimeout =
        Millis(5000);
    return s;
}

const char* ChunkingEhlo = "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n250 BINARYMIME\r\n";

std::vector<SmtpReply> sendVia(BdatServer& server, const TempMessage& m, std::vector<std::string> rcpts = {"r@b.test"}) {
    SmtpClient c(settings());
    SmtpReply r = c.open(Poco::Net::SocketAddress("127.0.0.1", server.port()), "fake", TlsPolicy::None, nullptr);
    BOOST_REQUIRE(r.isPositive());
    auto replies = c.send("s@a.test", rcpts, m.message);
    c.quit();
    server.join();
    return replies;
}

}  // namespace

BOOST_AUTO_TEST_CASE(text_message_goes_in_bdat_chunks_unchanged) {
    BdatServer server(ChunkingEhlo);
    // Dots at line starts are not stuffed in BDAT; more than one 1 MiB chunk.
    std::string body = "Subject: gr\xc3\xbc\xc3\x9f""e\r\n\r\n.leading dot\r\n.\r\n";
    while (body.size() < 2'500'000) body += "line of text to make the message large enough\r\n";
    TempMessage m(body);
    auto replies = sendVia(server, m);
    BOOST_REQUIRE_EQUAL(replies.size(), 1u);
    BOOST_TEST(replies[0].code == 250);
    BOOST_TEST(server.content == body);
    BOOST_TEST(server.commands[1] == "MAIL FROM:<s@a.test> BODY=8BITMIME");
    BOOST_TEST(server.commands[2] == "RCPT TO:<r@b.test>");
    BOOST_TEST(server.commands[3] == "BDAT 1048576");
    BOOST_TEST(server.commands[server.commands.size() - 2] == "BDAT 0 LAST");
    for (const auto& c : server.commands) BOOST_TEST(c != "DATA");
}

BOOST_AUTO_TEST_CASE(binary_message_declares_binarymime) {
    BdatServer server(ChunkingEhlo);
    const std::string body = std::string("Subject: b\r\n\r\n") + '\0' + "nul\rbare CR\nbare LF\r\n";
    TempMessage m(body);
    BOOST_TEST(SmtpClient::needsBinaryMime(m.path));
    auto replies = sendVia(server, m);
    BOOST_TEST(replies[0].code == 250);
    BOOST_TEST(server.commands[1] == "MAIL FROM:<s@a.test> BODY=BINARYMIME");
    BOOST_TEST(server.content == body);
}

BOOST_AUTO_TEST_CASE(binary_message_without_binarymime_is_563) {
    for (const char* ehlo : {"250-fake\r\n250-PIPELINING\r\n250 CHUNKING\r\n",      // no BINARYMIME
                             "250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n"}) {  // no CHUNKING
        BdatServer server(ehlo);
        TempMessage m(std::string("Subject: b\r\n\r\nbare\nLF\r\n"));
        auto replies = sendVia(server, m, {"r1@b.test", "r2@b.test"});
        BOOST_REQUIRE_EQUAL(replies.size(), 2u);
        for (const auto& r : replies) {
            BOOST_TEST(r.code == 554);
            BOOST_TEST(r.lines.at(0).rfind("5.6.3 ", 0) == 0);
        }
        for (const auto& c : server.commands) BOOST_TEST(c.rfind("MAIL", 0) != 0);  // nothing sent
    }
}

BOOST_AUTO_TEST_CASE(eight_bit_parts_go_as_quoted_printable_to_a_hop_without_8bitmime) {
    // RFC 6152 3: no 8-bit octet reaches a server that does not offer 8BITMIME; a part
    // declared 8bit is converted (MimeDowngrade), SIZE is left out. Over 1 MiB: the file is
    // read in blocks, and a chunk ends wherever the conversion has output.
    std::string body = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: 8bit\r\nSubject: x\r\n\r\n";
    std::string text;
    while (text.size() < 1'500'000) text += "gr\xc3\xbc\xc3\x9f""e = line\r\n";
    body += text;
    TempMessage m(body);
    BdatServer server("250-fake\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250 CHUNKING\r\n");
    auto replies = sendVia(server, m);
    BOOST_TEST(replies.at(0).code == 250);
    BOOST_TEST(server.commands[1] == "MAIL FROM:<s@a.test>");
    BOOST_TEST(std::none_of(server.content.begin(), server.content.end(), [](char c) { return c & 0x80; }));
    BOOST_TEST(server.content == MimeDowngrade::convert(body));
    BOOST_TEST(server.content.find("\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ngr=C3=BC=C3=9Fe =3D line\r\n") !=
               std::string::npos);

    // Conversion off (delivery.mime_output_conversion = false): as it is, with SIZE.
    BdatServer asIs("250-fake\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250 CHUNKING\r\n");
    ClientSettings off = settings();
    off.mimeOutputConversion = false;
    SmtpClient c(off);
    BOOST_REQUIRE(c.open(Poco::Net::SocketAddress("127.0.0.1", asIs.port()), "fake", TlsPolicy::None, nullptr).isPositive());
    BOOST_TEST(c.send("s@a.test", {"r@b.test"}, m.message).at(0).code == 250);
    c.quit();
    asIs.join();
    BOOST_TEST(asIs.commands[1] == "MAIL FROM:<s@a.test> SIZE=" + std::to_string(body.size()));
    BOOST_TEST(asIs.content == body);
}

BOOST_AUTO_TEST_CASE(refused_chunk_decides_the_message) {
    BdatServer server(ChunkingEhlo, /*refuseChunk=*/1);
    std::string body = "Subject: x\r\n\r\n";
    while (body.size() < 1'500'000) body += "0123456789012345678901234567890123456789\r\n";
    TempMessage m(body);
    auto replies = sendVia(server, m);
    BOOST_TEST(replies[0].code == 552);
    BOOST_TEST(replies[0].lines.at(0) == "5.3.4 too big");
}

BOOST_AUTO_TEST_CASE(needs_binary_mime_detection) {
    BOOST_TEST(!SmtpClient::needsBinaryMime(TempMessage("a\r\nb\r\n\xc3\xbc\r\n").path));
    BOOST_TEST(SmtpClient::needsBinaryMime(TempMessage(std::string("a\0b\r\n", 5)).path));
    BOOST_TEST(SmtpClient::needsBinaryMime(TempMessage("a\rb\r\n").path));
    BOOST_TEST(SmtpClient::needsBinaryMime(TempMessage("a\nb\r\n").path));
    BOOST_TEST(SmtpClient::needsBinaryMime(TempMessage("ab\r").path));
    BOOST_TEST(!SmtpClient::needsBinaryMime("/nonexistent/postern/file"));
}

BOOST_AUTO_TEST_CASE(loaded_message_is_sent_from_memory) {
    // loadMessage reads a small file once; the checks and the chunks then use memory only
    // (the file is gone before the transaction).
    const std::string body = std::string("Subject: m\r\n\r\n") + "bare\nLF " + '\0' + "\r\n";
    TempMessage m(body);
    BOOST_REQUIRE(loadMessage(m.path, m.message.content, m.message.size));
    BOOST_REQUIRE(m.message.content);
    BOOST_TEST(*m.message.content == body);
    BOOST_TEST(m.message.size == body.size());
    ::unlink(m.path.c_str());
    BOOST_TEST(SmtpClient::needsBinaryMime(m.message));
    BdatServer server(ChunkingEhlo);
    auto replies = sendVia(server, m);
    BOOST_TEST(replies[0].code == 250);
    BOOST_TEST(server.commands[1] == "MAIL FROM:<s@a.test> BODY=BINARYMIME");
    BOOST_TEST(server.content == body);
}

BOOST_AUTO_TEST_CASE(large_message_is_streamed_not_loaded) {
    std::string body(static_cast<std::size_t>(InMemoryLimit) + 10, 'a');
    TempMessage m(body);
    std::shared_ptr<const std::string> content;
    std::uint64_t size = 0;
    BOOST_REQUIRE(loadMessage(m.path, content, size));
    BOOST_TEST(!content);
    BOOST_TEST(size == body.size());
    std::shared_ptr<const std::string> none;
    BOOST_TEST(!loadMessage("/nonexistent/postern/file", none, size));
}

BOOST_AUTO_TEST_SUITE_END()
