// SmtpSession with a fake core::MilterSession: where each verdict becomes which reply
// (connect/HELO refusals answer MAIL; RCPT refusals are per recipient; refusals after DATA
// are the end-of-data reply and nothing reaches the sink), that the sink is opened only
// after the milters have seen the message, and that envelope and content actions reach
// the stored message.
#include "SmtpFakes.h"
#include "smtp/SmtpSession.h"

#include <boost/test/unit_test.hpp>

#include <functional>
#include <algorithm>
#include <map>

using namespace postern;
using namespace postern::smtp;
using Kind = core::MilterVerdict::Kind;

namespace {

struct NoAuth : core::AuthService {
    core::AuthResult authenticate(const core::AuthRequest&) override { return {}; }
};

struct Directory : core::UserDirectory {
    core::Answer isLocalDomain(const std::string& d) override {
        return d == "example.test" ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& a) override {
        core::RecipientLookup r;
        r.answer = core::Answer::No;
        if (a == "alice@example.test" || a == "bob@example.test" || a == "erin@example.test") {
            r.answer = core::Answer::Yes;
            r.mailboxes = {"example.test/" + a.substr(0, a.find('@'))};
        }
        return r;
    }
};

// Answers each step with what the test set; records the steps.
struct FakeMilter : core::MilterSession {
    std::map<std::string, core::MilterVerdict> verdicts;  // step -> verdict (default continue)
    std::function<void(core::MilterMessage&)> edit;
    std::vector<std::string> steps;
    core::MilterFacts lastFacts;
    int sinkOpenedAtEom = -1;
    test::RecordingSink* sink = nullptr;
    core::MilterVerdict at(const std::string& step, const core::MilterFacts& f) {
        steps.push_back(step);
        lastFacts = f;
        auto it = verdicts.find(step);
        return it == verdicts.end() ? core::MilterVerdict{} : it->second;
    }
    core::MilterVerdict connect(const core::MilterFacts& f) override { return at("connect", f); }
    core::MilterVerdict helo(const core::MilterFacts& f) override { return at("helo", f); }
    core::MilterVerdict mail(const core::MilterFacts& f) override { return at("mail", f); }
    core::MilterVerdict rcpt(const core::MilterFacts& f) override { return at("rcpt:" + f.recipient, f); }
    core::MilterVerdict data(const core::MilterFacts& f) override { return at("data", f); }
    core::MilterVerdict message(const core::MilterFacts& f, core::MilterMessage& m) override {
        if (sink) sinkOpenedAtEom = sink->opened;
        if (edit) edit(m);
        return at("eom", f);
    }
    void abort() override { steps.push_back("abort"); }
};

core::MilterVerdict verdict(Kind k, std::string reply = "") {
    core::MilterVerdict v;
    v.kind = k;
    v.reply = std::move(reply);
    v.milter = "inet:127.0.0.1:1";
    return v;
}

struct Fixture {
    NoAuth auth;
    Directory dir;
    test::RecordingSink sink;
    FakeMilter milter;
    SmtpSettings settings;
    std::unique_ptr<SmtpSession> s;
    std::string greeting;

    Fixture() {
        settings.hostname = "mx.example.test";
        settings.role = Role::Mx;
        settings.maxMessageSize = 10000;
        settings.maxRecipients = 10;
        settings.maxCommandLength = 512;
        settings.maxLineLength = 1000;
        settings.maxHeaderSize = 10000;
        settings.maxErrors = 20;
        milter.sink = &sink;
    }
    void start() {
        core::ClientAddress c;
        c.ip = Poco::Net::IPAddress("192.0.2.7");
        c.port = 4000;
        SmtpPorts ports{auth, dir, nullptr, sink};
        ports.milter = &milter;
        s = std::make_unique<SmtpSession>(settings, ports, "sid", c, false);
        s->setMilterInfo("mx", "", "");
        greeting = s->greeting().bytes;
    }
    std::string cmd(const std::string& line) { return s->onLine(line).bytes; }
    std::string data(const std::string& bytes) {
        SmtpOutput out;
        s->onData(bytes.data(), bytes.size(), out);
        return out.bytes;
    }
    std::string send(const std::string& rcpt = "alice@example.test") {
        cmd("EHLO c");
        cmd("MAIL FROM:<x@remote.test>");
        cmd("RCPT TO:<" + rcpt + ">");
        cmd("DATA");
        return data("Subject: hi\r\n\r\nbody\r\n.\r\n");
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_milter)

BOOST_AUTO_TEST_CASE(steps_in_order_and_sink_opened_after_the_milters) {
    Fixture f;
    f.start();
    BOOST_TEST(f.send().find("250 2.0.0") == 0);
    BOOST_TEST(f.milter.steps ==
               (std::vector<std::string>{"connect", "helo", "mail", "rcpt:alice@example.test", "data", "eom",
                                         "abort"}));  // every transaction end; a no-op after eom
    BOOST_TEST(f.milter.sinkOpenedAtEom == 0);  // nothing stored or queued before the milters decide
    BOOST_REQUIRE(f.sink.committed.size() == 1u);
    BOOST_TEST(f.sink.committed[0].data.find("Subject: hi\r\n\r\nbody\r\n") != std::string::npos);
    BOOST_TEST(f.milter.lastFacts.daemonName == "mx");
    BOOST_TEST(f.milter.lastFacts.client.host() == "192.0.2.7");
    BOOST_TEST(f.milter.lastFacts.sender == "x@remote.test");
}

BOOST_AUTO_TEST_CASE(connect_refusal_answers_mail) {
    Fixture f;
    f.milter.verdicts["connect"] = verdict(Kind::Reject);
    f.start();
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "550 5.7.1 Command rejected\r\n");
    Fixture t;
    t.milter.verdicts["helo"] = verdict(Kind::TempFail);
    t.start();
    t.cmd("EHLO c");
    BOOST_TEST(t.cmd("MAIL FROM:<x@remote.test>") == "451 4.7.1 Service unavailable - try again later\r\n");
}

BOOST_AUTO_TEST_CASE(rcpt_refusal_is_per_recipient) {
    Fixture f;
    f.milter.verdicts["rcpt:bob@example.test"] = verdict(Kind::Reject, "550 5.7.1 Not bob");
    f.start();
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "550 5.7.1 Not bob\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    f.cmd("DATA");
    BOOST_TEST(f.data("Subject: x\r\n\r\nb\r\n.\r\n").find("250 2.0.0") == 0);
    BOOST_REQUIRE(f.sink.committed.size() == 1u);
    BOOST_TEST(f.sink.committed[0].env.localMailboxes == std::vector<std::string>{"example.test/alice"});
}

BOOST_AUTO_TEST_CASE(refusals_at_the_end_are_the_data_reply_and_store_nothing) {
    Fixture f;
    f.milter.verdicts["eom"] = verdict(Kind::Reject, "554-5.7.1 Spam\r\n554 5.7.1 Really");
    f.start();
    BOOST_TEST(f.send() == "554-5.7.1 Spam\r\n554 5.7.1 Really\r\n");
    BOOST_TEST(f.sink.opened == 0);
    Fixture t;
    t.milter.verdicts["eom"] = verdict(Kind::TempFail);
    t.start();
    BOOST_TEST(t.send() == "451 4.7.1 Service unavailable - try again later\r\n");
    BOOST_TEST(t.sink.opened == 0);
    Fixture d;
    d.milter.verdicts["data"] = verdict(Kind::Reject);
    d.start();
    d.cmd("EHLO c");
    d.cmd("MAIL FROM:<x@remote.test>");
    d.cmd("RCPT TO:<alice@example.test>");
    BOOST_TEST(d.cmd("DATA") == "550 5.7.1 Message content rejected\r\n");
    Fixture x;
    x.milter.verdicts["eom"] = verdict(Kind::Discard);
    x.start();
    BOOST_TEST(x.send().find("250 2.0.0") == 0);
    BOOST_TEST(x.sink.opened == 0);
}

// After a milter's DISCARD (here at MAIL) the message gets no more milter events, as in
// Postfix: a libmilter milter is back in its HELO state and would never answer a RCPT.
BOOST_AUTO_TEST_CASE(discard_at_mail_ends_the_milter_events_of_the_message) {
    Fixture f;
    f.milter.verdicts["mail"] = verdict(Kind::Discard);
    f.start();
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("DATA").find("354") == 0);
    BOOST_TEST(f.data("Subject: x\r\n\r\nbody\r\n.\r\n").find("250 2.0.0") == 0);
    BOOST_TEST(f.sink.opened == 0);
    const std::vector<std::string> after(std::find(f.milter.steps.begin(), f.milter.steps.end(), "mail") + 1,
                                         f.milter.steps.end());
    BOOST_TEST(std::none_of(after.begin(), after.end(), [](const std::string& s) {
        return s.rfind("rcpt:", 0) == 0 || s == "data" || s == "eom";
    }));
    // The next transaction is the milters' again.
    f.milter.verdicts.erase("mail");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    BOOST_TEST(f.milter.steps.back() == "rcpt:alice@example.test");
}

// A milter's 421 ends the session (RFC 5321 3.8; Postfix hangs up too).
BOOST_AUTO_TEST_CASE(a_milter_421_closes_the_session) {
    Fixture f;
    f.milter.verdicts["rcpt:alice@example.test"] = verdict(Kind::TempFail, "421 4.7.0 too busy, closing");
    f.start();
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    SmtpOutput out = f.s->onLine("RCPT TO:<alice@example.test>");
    BOOST_TEST(out.bytes == "421 4.7.0 too busy, closing\r\n");
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
    BOOST_TEST(f.s->isClosed());
}

BOOST_AUTO_TEST_CASE(envelope_and_content_actions_reach_the_sink) {
    Fixture f;
    f.milter.edit = [](core::MilterMessage& m) {
        m.content = "X-Milter: yes\r\n" + m.content;
        m.contentChanged = true;
        m.sender = "new@example.test";
        m.senderChanged = true;
        m.recipients = {"erin@example.test", "x@remote.example"};
        m.deletedRecipients = {"alice@example.test"};
        m.addedRecipients = {"erin@example.test", "x@remote.example", "nobody@example.test"};
        m.quarantine = true;
        m.quarantineReason = "check";
    };
    f.start();
    BOOST_TEST(f.send().find("250 2.0.0") == 0);
    BOOST_REQUIRE(f.sink.committed.size() == 1u);
    const auto& st = f.sink.committed[0];
    BOOST_TEST(st.data.rfind("X-Milter: yes\r\nReceived: ", 0) == 0);
    BOOST_TEST(st.env.sender == "new@example.test");
    BOOST_TEST(st.env.localMailboxes == std::vector<std::string>{"example.test/erin"});  // nobody@ is unknown
    BOOST_TEST(st.env.remoteRecipients == std::vector<std::string>{"x@remote.example"});
    BOOST_TEST(st.env.hold);
}

BOOST_AUTO_TEST_CASE(bdat_is_filtered_like_data) {
    Fixture f;
    f.milter.verdicts["eom"] = verdict(Kind::Reject, "550 5.7.1 No chunks");
    f.start();
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    BOOST_TEST(f.cmd("BDAT 12").empty());
    BOOST_TEST(f.data("Subject: x\r\n").find("250 2.0.0 12 octets") == 0);
    BOOST_TEST(f.cmd("BDAT 5 LAST").empty());
    BOOST_TEST(f.data("\r\nb\r\n") == "550 5.7.1 No chunks\r\n");
    BOOST_TEST(f.sink.opened == 0);
    BOOST_TEST(f.milter.steps.at(4) == "data");  // the first chunk is the DATA step
}

BOOST_AUTO_TEST_CASE(rset_aborts_the_milter_transaction) {
    Fixture f;
    f.start();
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RSET");
    BOOST_TEST(f.milter.steps.back() == "abort");
}

BOOST_AUTO_TEST_SUITE_END()
