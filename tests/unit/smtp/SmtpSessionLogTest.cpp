// The operator log lines of an SMTP session (logger "postern.smtp") with hostile client
// values: a user name and a sender with spaces, '=' and quotes, a HELO name with spaces.
// Every value must read back as itself and no line may carry a key twice (nothing forged).
#include "core/LogValue.h"
#include "sasl/Base64.h"
#include "smtp/SmtpSession.h"

#include <Poco/AutoPtr.h>
#include <Poco/Channel.h>
#include <Poco/Logger.h>
#include <Poco/Message.h>

#include <boost/test/unit_test.hpp>

#include <map>
#include <regex>
#include <string>
#include <vector>

using namespace postern;
using namespace postern::smtp;

namespace {

const std::string kUser = "a b=c\"d";  // a hostile login name: space, '=', quote
const std::string kPassword = "secret";

struct Capture : Poco::Channel {
    std::vector<std::string> lines;
    void log(const Poco::Message& m) override { lines.push_back(m.getText()); }
};

struct Auth : core::AuthService {
    core::AuthResult authenticate(const core::AuthRequest& r) override {
        core::AuthResult res;
        res.status = r.user == kUser && r.password == kPassword ? core::AuthStatus::Ok : core::AuthStatus::BadCredentials;
        if (res.status == core::AuthStatus::Ok) {
            res.identity.user = r.user;
            res.identity.senderAddresses = {"alice@example.test"};
            res.identity.mailbox = "example.test/alice";
        }
        return res;
    }
};

struct Directory : core::UserDirectory {
    core::Answer isLocalDomain(const std::string& d) override {
        return d == "example.test" ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& a) override {
        core::RecipientLookup r;
        r.answer = a == "alice@example.test" ? core::Answer::Yes : core::Answer::No;
        if (r.answer == core::Answer::Yes) r.mailboxes = {"example.test/alice"};
        return r;
    }
};

struct Sink : core::MessageSink {
    struct Writer : core::MessageWriter {
        bool write(const char*, std::size_t) override { return true; }
        core::SinkResult commit() override { return {core::SinkStatus::Ok, "Q1"}; }
    };
    core::MessageWriterPtr open(const core::Envelope&, core::SinkStatus& st) override {
        st = core::SinkStatus::Ok;
        return std::make_unique<Writer>();
    }
};

// key=token or key="text", split on spaces outside quotes, escapes undone; a key seen twice
// fails the test (a value that forged a key).
std::map<std::string, std::string> fieldsOf(const std::string& line) {
    std::map<std::string, std::string> fields;
    std::size_t i = 0;
    while (i < line.size()) {
        const std::size_t eq = line.find('=', i);
        BOOST_REQUIRE_MESSAGE(eq != std::string::npos, line);
        const std::string key = line.substr(i, eq - i);
        BOOST_REQUIRE_MESSAGE(key.find(' ') == std::string::npos, line);
        std::size_t end;
        std::string value;
        if (eq + 1 < line.size() && line[eq + 1] == '"') {
            end = line.find('"', eq + 2);
            BOOST_REQUIRE_MESSAGE(end != std::string::npos, line);
            value = line.substr(eq + 2, end - eq - 2);
            ++end;
        } else {
            end = line.find(' ', eq + 1);
            if (end == std::string::npos) end = line.size();
            value = line.substr(eq + 1, end - eq - 1);
        }
        BOOST_REQUIRE_MESSAGE(fields.emplace(key, core::logUnescape(value)).second, "key " + key + " twice: " + line);
        i = end + 1;
    }
    return fields;
}

std::string plain(const std::string& authzid, const std::string& user, const std::string& password) {
    return sasl::encodeBase64(authzid + std::string(1, '\0') + user + std::string(1, '\0') + password);
}

// Every limit explicitly (the struct has no defaults: they live in the key table).
SmtpSettings settingsFor(Role role) {
    SmtpSettings settings;
    settings.hostname = "mx.example.test";
    settings.role = role;
    settings.maxMessageSize = 10 * 1024 * 1024;
    settings.maxRecipients = 100;
    settings.maxCommandLength = 512;   // RFC 5321 4.5.3.1.4
    settings.maxLineLength = 1000;     // RFC 5321 4.5.3.1.6
    settings.maxHeaderSize = 1024 * 1024;
    settings.maxErrors = 20;
    return settings;
}

// The session's ports and its client (192.0.2.7:4000).
struct Fakes {
    Auth auth;
    Directory dir;
    Sink sink;
    core::ClientAddress client = [] {
        core::ClientAddress c;
        c.ip = Poco::Net::IPAddress("192.0.2.7");
        c.port = 4000;
        return c;
    }();
    SmtpPorts ports() { return SmtpPorts{auth, dir, nullptr, sink}; }
};

// The lines of logger postern.smtp, collected from here on.
Poco::AutoPtr<Capture> captureSmtpLog() {
    Poco::AutoPtr<Capture> capture(new Capture);
    Poco::Logger& log = Poco::Logger::get("postern.smtp");
    log.setChannel(capture);
    log.setLevel(Poco::Message::PRIO_DEBUG);
    return capture;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_session_log)

BOOST_AUTO_TEST_CASE(hostile_user_sender_and_helo_cannot_forge_a_key) {
    Poco::AutoPtr<Capture> capture = captureSmtpLog();
    Poco::Logger& log = Poco::Logger::get("postern.smtp");
    Fakes fakes;
    SmtpSettings settings = settingsFor(Role::Submission);
    settings.tlsAvailable = true;
    settings.addMissingHeaders = true;
    settings.grantOwnSendersOnly = true;
    SmtpSession s(settings, fakes.ports(), "sid", fakes.client, true);
    s.greeting();
    auto cmd = [&](const std::string& line) { return s.onLine(line).bytes; };

    // A HELO with spaces is refused (one token, like Postfix); one with '=' and quotes is taken.
    BOOST_TEST(cmd("EHLO evil host user=root ip=10.0.0.1 result=ok").rfind("501 ", 0) == 0u);
    BOOST_TEST(cmd("EHLO evil=host\"user=root").rfind("250-", 0) == 0u);
    // auth.fail result=authzid_mismatch: the (hostile) authentication identity is logged.
    BOOST_TEST(cmd("AUTH PLAIN " + plain("other", kUser, kPassword)).rfind("535 ", 0) == 0u);
    BOOST_TEST(cmd("AUTH PLAIN " + plain("", kUser, kPassword)).rfind("235 ", 0) == 0u);
    // mail.reject: a sender this user does not own, itself hostile.
    const std::string sender = "\"x y=z\"@example.test";
    BOOST_TEST(cmd("MAIL FROM:<" + sender + ">").rfind("553 ", 0) == 0u);
    BOOST_TEST(cmd("MAIL FROM:<alice@example.test>").rfind("250 ", 0) == 0u);
    BOOST_TEST(cmd("RCPT TO:<nobody@example.test>").rfind("550 ", 0) == 0u);  // rcpt.reject
    BOOST_TEST(cmd("RCPT TO:<alice@example.test>").rfind("250 ", 0) == 0u);
    BOOST_TEST(cmd("DATA").rfind("354 ", 0) == 0u);
    SmtpOutput out;
    const std::string body = "Subject: x\r\n\r\nhi\r\n.\r\n";
    s.onData(body.data(), body.size(), out);
    BOOST_TEST(out.bytes.rfind("250 ", 0) == 0u);

    std::map<std::string, std::map<std::string, std::string>> byEvent;
    for (const auto& line : capture->lines) {
        BOOST_TEST_MESSAGE(line);
        const auto fields = fieldsOf(line);
        BOOST_TEST(fields.at("s") == "sid", line);
        BOOST_TEST(fields.at("ip") == "192.0.2.7", line);
        if (fields.count("user")) {
            BOOST_TEST(fields.at("user") == kUser, line);
            // A fail2ban-style pattern reads the value back as one token.
            std::smatch m;
            BOOST_REQUIRE(std::regex_search(line, m, std::regex(R"( user=(\S+))")));
            BOOST_TEST(core::logUnescape(m[1].str()) == kUser);
        }
        BOOST_TEST(line.find("root") == std::string::npos, line);  // the HELO forged nothing
        byEvent[fields.at("event")] = fields;
    }
    BOOST_REQUIRE(byEvent.count("auth.fail"));
    BOOST_TEST(byEvent["auth.fail"].at("result") == "authzid_mismatch");
    BOOST_REQUIRE(byEvent.count("mail.reject"));
    BOOST_TEST(byEvent["mail.reject"].at("from") == "<" + sender + ">");
    BOOST_TEST(byEvent["mail.reject"].at("reply").rfind("553 ", 0) == 0u);
    BOOST_REQUIRE(byEvent.count("rcpt.reject"));
    BOOST_TEST(byEvent["rcpt.reject"].at("to") == "<nobody@example.test>");
    BOOST_TEST(byEvent["rcpt.reject"].at("from") == "<alice@example.test>");
    BOOST_REQUIRE(byEvent.count("message.accept"));
    BOOST_TEST(byEvent["message.accept"].at("id") == "Q1");
    BOOST_TEST(byEvent["message.accept"].at("rcpts") == "1");
    // The one line of the event says where the copies went (the store logs none of its own).
    BOOST_TEST(byEvent["message.accept"].count("local") == 1u);
    BOOST_TEST(byEvent["message.accept"].count("remote") == 1u);

    log.setChannel(nullptr);
}

// The logged reason is the refusal the client got: a header line over both the line and
// the header limit is refused as a header too large (552), and logged so.
BOOST_AUTO_TEST_CASE(reject_reason_matches_the_reply) {
    Poco::AutoPtr<Capture> capture = captureSmtpLog();
    Poco::Logger& log = Poco::Logger::get("postern.smtp");
    Fakes fakes;
    SmtpSettings settings = settingsFor(Role::Mx);
    settings.maxHeaderSize = 2000;
    SmtpSession s(settings, fakes.ports(), "sid", fakes.client, false);
    s.greeting();
    auto cmd = [&](const std::string& line) { return s.onLine(line).bytes; };
    auto reasonOf = [&](const std::string& header) {
        capture->lines.clear();
        BOOST_TEST(cmd("MAIL FROM:<bob@remote.test>").rfind("250 ", 0) == 0u);
        BOOST_TEST(cmd("RCPT TO:<alice@example.test>").rfind("250 ", 0) == 0u);
        BOOST_TEST(cmd("DATA").rfind("354 ", 0) == 0u);
        SmtpOutput out;
        const std::string body = header + "\r\n\r\nhi\r\n.\r\n";
        s.onData(body.data(), body.size(), out);
        std::string reason;
        for (const auto& line : capture->lines)
            if (line.find("event=message.reject") != std::string::npos) reason = fieldsOf(line).at("reason");
        return std::make_pair(out.bytes.substr(0, 9), reason);
    };
    BOOST_TEST(cmd("EHLO c").rfind("250", 0) == 0u);
    auto both = reasonOf("Subject: " + std::string(3000, 'x'));
    BOOST_TEST(both.first == "552 5.3.4");
    BOOST_TEST(both.second == "header_size");
    auto line = reasonOf("Subject: " + std::string(1500, 'x'));
    BOOST_TEST(line.first == "554 5.6.0");
    BOOST_TEST(line.second == "line_length");
    log.setChannel(nullptr);
}

BOOST_AUTO_TEST_SUITE_END()
