// SmtpSession fed bytes with fakes of the core ports: asserts exact reply lines and the
// observable effects (what the sink committed, what the auth port was asked).
#include "SmtpFakes.h"
#include "sasl/Base64.h"
#include "smtp/SmtpSession.h"

#include <boost/test/unit_test.hpp>

#include <map>
#include <set>

using namespace postern;
using namespace postern::smtp;

namespace {

struct FakeAuth : core::AuthService {
    std::map<std::string, std::string> passwords{{"alice@example.test", "secret"}};
    bool down = false;
    int calls = 0;
    core::AuthResult authenticate(const core::AuthRequest& r) override {
        ++calls;
        core::AuthResult res;
        if (down) return res;  // TempFail
        auto it = passwords.find(r.user);
        if (it == passwords.end() || it->second != r.password) {
            res.status = core::AuthStatus::BadCredentials;
            return res;
        }
        res.status = core::AuthStatus::Ok;
        res.identity.user = r.user;
        res.identity.senderAddresses = {r.user, "alias@example.test"};
        res.identity.mailbox = "example.test/alice";
        return res;
    }
};

struct FakeDirectory : core::UserDirectory {
    bool down = false;
    core::Answer isLocalDomain(const std::string& d) override {
        if (down) return core::Answer::TempFail;
        return d == "example.test" ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& a) override {
        core::RecipientLookup r;
        if (down) return r;
        if (a == "alice@example.test" || a == "bob@example.test" || a == "j\xC3\xB6rg@example.test") {
            r.answer = core::Answer::Yes;
            r.mailboxes = {"example.test/" + a.substr(0, a.find('@'))};
        } else {
            r.answer = core::Answer::No;
        }
        return r;
    }
};

struct FakeGrants : core::GrantStore {
    std::set<std::string> ips;
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& c, const core::Grant&) override {
        ips.insert(c.host());
        return true;
    }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& c, const std::string&, core::Grant* g) override {
        if (!ips.count(c.host())) return core::Answer::No;
        if (g) {
            g->user = "alice@example.test";
            g->senders = {"alice@example.test", "alias@example.test"};
        }
        return core::Answer::Yes;
    }
};

std::chrono::system_clock::time_point fixedNow() {
    return std::chrono::system_clock::from_time_t(1795815930);  // Fri, 27 Nov 2026 21:45:30
}

// The settings every session test starts from (SmtpSettings has no defaults of its own: the
// app fills it from the smtp.* keys). Small message and recipient limits so the limit paths
// are reached with short inputs; the rest as the shipped smtp.* values.
SmtpSettings testSettings(Role role) {
    SmtpSettings s;
    s.hostname = "mx.example.test";
    s.role = role;
    s.tlsAvailable = true;
    s.allowPlaintextAuth = false;
    s.maxMessageSize = 1000;
    s.maxRecipients = 3;
    s.maxCommandLength = 512;      // RFC 5321 4.5.3.1.4
    s.maxLineLength = 1000;        // RFC 5321 4.5.3.1.6
    s.maxHeaderSize = 1024 * 1024;
    s.maxErrors = 20;
    s.maxJunkCommands = 100;
    s.maxRecipientOvershoot = 1000;
    s.addMissingHeaders = true;
    s.grantOwnSendersOnly = true;
    s.maxTransactions = 0;         // no limit unless a test sets one
    return s;
}

struct Fixture {
    FakeAuth auth;
    FakeDirectory dir;
    FakeGrants grants;
    test::RecordingSink sink;
    SmtpSettings settings;
    std::unique_ptr<SmtpSession> s;

    Fixture(Role role = Role::Mx, bool tls = false, std::string ip = "192.0.2.7")
        : settings(testSettings(role)) {
        start(tls, ip);
    }
    void start(bool tls, const std::string& ip) {
        core::ClientAddress c;
        c.ip = Poco::Net::IPAddress(ip);
        c.port = 4000;
        s = std::make_unique<SmtpSession>(settings, SmtpPorts{auth, dir, &grants, sink}, "sid", c, tls, fixedNow);
        s->greeting();
    }
    std::string cmd(const std::string& line) { return s->onLine(line).bytes; }
    // Feeds DATA bytes; returns the reply and the unconsumed rest.
    std::string data(const std::string& bytes, std::string* rest = nullptr) {
        SmtpOutput out;
        std::size_t used = s->onData(bytes.data(), bytes.size(), out);
        if (rest) *rest = bytes.substr(used);
        return out.bytes;
    }
    void login() {
        std::string ir = sasl::encodeBase64(std::string("\0alice@example.test\0secret", 26));
        BOOST_REQUIRE_EQUAL(cmd("AUTH PLAIN " + ir), "235 2.7.0 Authentication successful\r\n");
    }
    // A submission as alice to bob, up to the start of the message (`data` comes next).
    void submitUntilData() {
        cmd("EHLO c");
        login();
        BOOST_REQUIRE_EQUAL(cmd("MAIL FROM:<alice@example.test>"), "250 2.1.0 Ok\r\n");
        BOOST_REQUIRE_EQUAL(cmd("RCPT TO:<bob@example.test>"), "250 2.1.5 Ok\r\n");
        BOOST_REQUIRE_EQUAL(cmd("DATA").substr(0, 4), "354 ");
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(smtp_session)

BOOST_AUTO_TEST_CASE(greeting_and_ehlo_without_tls) {
    Fixture f;
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress("192.0.2.7");
    SmtpSession s(f.settings, SmtpPorts{f.auth, f.dir, nullptr, f.sink}, "x", c, false, fixedNow);
    BOOST_TEST(s.greeting().bytes == "220 mx.example.test ESMTP Postern\r\n");
    std::string ehlo = s.onLine("EHLO client.example").bytes;
    BOOST_TEST(ehlo.find("250-mx.example.test\r\n") == 0);
    BOOST_TEST(ehlo.find("PIPELINING") != std::string::npos);
    BOOST_TEST(ehlo.find("SIZE 1000") != std::string::npos);
    BOOST_TEST(ehlo.find("8BITMIME") != std::string::npos);
    BOOST_TEST(ehlo.find("ENHANCEDSTATUSCODES") != std::string::npos);
    BOOST_TEST(ehlo.find("STARTTLS") != std::string::npos);
    BOOST_TEST(ehlo.find("AUTH") == std::string::npos);  // not before TLS
}

BOOST_AUTO_TEST_CASE(auth_before_tls_is_538) {
    Fixture f;
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==") ==
               "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    BOOST_TEST(f.auth.calls == 0);
}

BOOST_AUTO_TEST_CASE(starttls_resets_state) {
    Fixture f;
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    f.cmd("RSET");
    SmtpOutput out = f.s->onLine("STARTTLS");
    BOOST_TEST(out.bytes == "220 2.0.0 Ready to start TLS\r\n");
    BOOST_TEST((out.action == SmtpOutput::Action::StartTls));
    f.s->onTlsStarted();
    // RFC 3207 4.2: EHLO must be sent again; until then no enhanced codes (RFC 2034: they
    // belong to the EHLO that offered them).
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "503 Error: send HELO/EHLO first\r\n");
    std::string ehlo = f.cmd("EHLO c");
    BOOST_TEST(ehlo.find("STARTTLS") == std::string::npos);
    BOOST_TEST(ehlo.find("AUTH PLAIN LOGIN") != std::string::npos);
    BOOST_TEST(f.cmd("STARTTLS").find("503 5.5.1") == 0);
}

BOOST_AUTO_TEST_CASE(auth_outcomes) {
    Fixture f(Role::Submission, true);
    f.cmd("EHLO c");
    std::string bad = sasl::encodeBase64(std::string("\0alice@example.test\0wrong", 25));
    BOOST_TEST(f.cmd("AUTH PLAIN " + bad) == "535 5.7.8 Authentication credentials invalid\r\n");
    BOOST_TEST(f.cmd("AUTH PLAIN !!!") == "501 5.5.2 Cannot decode AUTH response\r\n");
    BOOST_TEST(f.cmd("AUTH PLAIN") == "334 \r\n");
    BOOST_TEST(f.cmd("*") == "501 5.0.0 Authentication cancelled\r\n");
    std::string other = sasl::encodeBase64(std::string("bob@example.test\0alice@example.test\0secret", 42));
    BOOST_TEST(f.cmd("AUTH PLAIN " + other) == "535 5.7.8 Authentication credentials invalid\r\n");
    BOOST_TEST(f.cmd("AUTH CRAM-MD5") == "504 5.5.4 Unrecognized authentication type\r\n");
    f.auth.down = true;
    std::string good = sasl::encodeBase64(std::string("\0alice@example.test\0secret", 26));
    BOOST_TEST(f.cmd("AUTH PLAIN " + good) == "454 4.7.0 Temporary authentication failure\r\n");
    f.auth.down = false;
    BOOST_TEST(f.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6\r\n");
    BOOST_TEST(f.cmd(sasl::encodeBase64("alice@example.test")) == "334 UGFzc3dvcmQ6\r\n");
    BOOST_TEST(f.cmd(sasl::encodeBase64("secret")) == "235 2.7.0 Authentication successful\r\n");
    BOOST_TEST(f.cmd("AUTH PLAIN " + good) == "503 5.5.1 Error: already authenticated\r\n");
}

BOOST_AUTO_TEST_CASE(submission_requires_auth_and_owned_sender) {
    Fixture f(Role::Submission, true);
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<alice@example.test>") == "530 5.7.0 Authentication required\r\n");
    f.login();
    BOOST_TEST(f.cmd("MAIL FROM:<bob@example.test>").find("553 5.7.1") == 0);
    BOOST_TEST(f.cmd("MAIL FROM:<>").find("553 5.7.1") == 0);
    BOOST_TEST(f.cmd("MAIL FROM:<Alias@Example.Test>") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<someone@remote.test>") == "250 2.1.5 Ok\r\n");
}

BOOST_AUTO_TEST_CASE(mx_relay_policy) {
    Fixture f;
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<nobody@example.test>").find("550 5.1.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<victim@remote.test>") == "554 5.7.1 Relay access denied\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<\"victim@remote.test\"@example.test>").find("550 5.1.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<victim%remote.test@example.test>").find("550 5.1.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<remote.test!victim@example.test>").find("550 5.1.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<@example.test:victim@remote.test>") == "554 5.7.1 Relay access denied\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<victim@remote.test.>").find("501") == 0);
    f.dir.down = true;
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>").find("451 4.3.0") == 0);
}

BOOST_AUTO_TEST_CASE(grant_allows_relay_for_that_ip_only) {
    Fixture f;
    f.grants.ips.insert("192.0.2.7");
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<alice@example.test>");
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>") == "250 2.1.5 Ok\r\n");
    f.start(false, "192.0.2.8");
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<alice@example.test>");
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>") == "554 5.7.1 Relay access denied\r\n");
}

BOOST_AUTO_TEST_CASE(grant_only_for_the_grant_holders_senders) {
    Fixture f;
    f.grants.ips.insert("192.0.2.7");
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<Alias@Example.Test>");
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>") == "250 2.1.5 Ok\r\n");
    f.cmd("RSET");
    f.cmd("MAIL FROM:<bob@example.test>");  // another subscriber behind the same NAT address
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>").find("554 5.7.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");  // local mail is fine
    f.cmd("RSET");
    f.cmd("MAIL FROM:<>");
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>").find("554 5.7.1") == 0);
    f.settings.grantOwnSendersOnly = false;
    f.cmd("RSET");
    f.cmd("MAIL FROM:<bob@example.test>");
    BOOST_TEST(f.cmd("RCPT TO:<friend@remote.test>") == "250 2.1.5 Ok\r\n");
}

BOOST_AUTO_TEST_CASE(sequence_errors) {
    Fixture f;
    BOOST_TEST(f.cmd("MAIL FROM:<a@b.test>") == "503 Error: send HELO/EHLO first\r\n");  // before EHLO: no enhanced codes
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "503 5.5.1 Error: need MAIL command\r\n");
    BOOST_TEST(f.cmd("DATA") == "503 5.5.1 Error: need MAIL command\r\n");
    f.cmd("MAIL FROM:<a@b.test>");
    BOOST_TEST(f.cmd("MAIL FROM:<a@b.test>") == "503 5.5.1 Error: nested MAIL command\r\n");
    BOOST_TEST(f.cmd("DATA") == "503 5.5.1 Error: need RCPT command\r\n");
    BOOST_TEST(f.cmd("VRFY alice") == "252 2.0.0 Cannot VRFY user, but will accept message\r\n");
    BOOST_TEST(f.cmd("NOOP") == "250 2.0.0 Ok\r\n");
    BOOST_TEST(f.cmd("FOO").find("500 5.5.1") == 0);
    BOOST_TEST(!f.s->closedByQuit());
    SmtpOutput q = f.s->onLine("QUIT");
    BOOST_TEST(q.bytes == "221 2.0.0 mx.example.test closing connection\r\n");
    BOOST_TEST((q.action == SmtpOutput::Action::Close));
    BOOST_TEST(f.s->closedByQuit());
}

BOOST_AUTO_TEST_CASE(explicit_state_follows_the_command_sequence) {
    Fixture f;
    BOOST_TEST((f.s->state() == SmtpState::Connected));
    BOOST_TEST(f.cmd("STARTTLS") == "503 Error: send HELO/EHLO first\r\n");
    f.cmd("EHLO c");
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    f.cmd("MAIL FROM:<a@remote.test>");
    BOOST_TEST((f.s->state() == SmtpState::Mail));
    // A bad MAIL inside a transaction is a sequence error first (RFC 5321 4.3.2: 503 before 501).
    BOOST_TEST(f.cmd("MAIL FROM:<bad") == "503 5.5.1 Error: nested MAIL command\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Mail));
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Rcpt));
    // AUTH is not allowed in a transaction (RFC 4954 4).
    BOOST_TEST(f.cmd("AUTH PLAIN").find("503 5.5.1") == 0);
    BOOST_TEST(f.cmd("DATA").find("354") == 0);
    BOOST_TEST((f.s->state() == SmtpState::Data));
    BOOST_TEST(f.s->inData());
    BOOST_TEST(f.data("Subject: x\r\n\r\nhi\r\n.\r\n").find("250 2.0.0") == 0);
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    f.cmd("MAIL FROM:<a@remote.test>");
    f.cmd("RSET");
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    f.cmd("MAIL FROM:<a@remote.test>");
    f.cmd("EHLO again");  // EHLO resets a transaction like RSET (RFC 5321 4.1.4)
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    f.cmd("QUIT");
    BOOST_TEST((f.s->state() == SmtpState::Closed));
    BOOST_TEST(f.s->isClosed());
    BOOST_TEST(f.cmd("NOOP").empty());  // nothing after goodbye
    BOOST_TEST(std::string(stateName(SmtpState::Rcpt)) == "rcpt");
}

BOOST_AUTO_TEST_CASE(starttls_returns_to_connected) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<a@remote.test>");
    // Not inside a transaction (as Postfix): TLS would discard it behind the milters' back.
    BOOST_TEST(f.cmd("STARTTLS") == "503 5.5.1 Error: MAIL transaction in progress\r\n");
    f.cmd("RCPT TO:<alice@example.test>");
    BOOST_TEST(f.cmd("STARTTLS") == "503 5.5.1 Error: MAIL transaction in progress\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Rcpt));
    f.cmd("RSET");
    BOOST_TEST(f.cmd("STARTTLS").find("220") == 0);
    f.s->onTlsStarted();
    BOOST_TEST((f.s->state() == SmtpState::Connected));
    BOOST_TEST(f.cmd("MAIL FROM:<a@remote.test>").find("503") == 0);
}

BOOST_AUTO_TEST_CASE(helo_gets_plain_codes) {
    Fixture f;
    BOOST_TEST(f.cmd("HELO c") == "250 mx.example.test\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<a@b.test>") == "503 Error: need MAIL command\r\n");
    // A HELO after an EHLO replaces its context, ENHANCEDSTATUSCODES with it (RFC 2034).
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("RCPT TO:<a@b.test>") == "503 5.5.1 Error: need MAIL command\r\n");
    f.cmd("HELO c");
    BOOST_TEST(f.cmd("RCPT TO:<a@b.test>") == "503 Error: need MAIL command\r\n");
}

// After HELO every ESMTP parameter is taken as after EHLO (Postfix does the same): DSN's
// used to get 555 there while SIZE, BODY and SMTPUTF8 were taken.
BOOST_AUTO_TEST_CASE(esmtp_parameters_after_helo_follow_one_rule) {
    Fixture f;
    f.cmd("HELO client.example");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> SIZE=100 BODY=8BITMIME SMTPUTF8") == "250 Ok\r\n");
    f.cmd("RSET");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> RET=HDRS ENVID=e1") == "250 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<alice@example.test> NOTIFY=SUCCESS ORCPT=rfc822;alice@example.test") == "250 Ok\r\n");
    BOOST_TEST(f.cmd("DATA").find("354") == 0);
    BOOST_TEST(f.data("Subject: hi\r\n\r\nbody\r\n.\r\n").find("250 Ok") == 0);
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST((f.sink.committed[0].env.dsn.ret == core::DsnRet::Headers));
    BOOST_TEST(f.sink.committed[0].env.dsn.envid == "e1");
    // An unknown parameter is still refused, with or without EHLO.
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> FOO=1").find("555") == 0);
}

BOOST_AUTO_TEST_CASE(data_delivered_with_received_header) {
    Fixture f;
    f.cmd("EHLO client.example");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    f.cmd("RCPT TO:<alice@example.test>");  // duplicate: one copy
    BOOST_TEST(f.cmd("DATA") == "354 End data with <CR><LF>.<CR><LF>\r\n");
    std::string rest;
    BOOST_TEST(f.data("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n", &rest) == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_TEST(rest == "QUIT\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    const auto& m = f.sink.committed[0];
    BOOST_TEST(m.env.localMailboxes == std::vector<std::string>{"example.test/alice"});
    BOOST_TEST(m.env.sender == "x@remote.test");
    BOOST_TEST(m.data ==
               "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.test (Postern) with ESMTP id sid.1\r\n"
               "\tfor <alice@example.test>; Fri, 27 Nov 2026 21:45:30 +0000\r\n"
               "Subject: hi\r\n\r\n.dot\r\nbody\r\n");
    BOOST_TEST(!f.s->inData());
}

BOOST_AUTO_TEST_CASE(submission_adds_date_and_message_id) {
    Fixture f(Role::Submission, true);
    f.submitUntilData();
    BOOST_TEST(f.data("Subject: hi\r\n\r\nbody\r\n.\r\n").find("250 2.0.0") == 0);
    const std::string& d = f.sink.committed.at(0).data;
    BOOST_TEST(d.find("with ESMTPSA id") != std::string::npos);
    BOOST_TEST(d.find("Subject: hi\r\nDate: Fri, 27 Nov 2026 21:45:30 +0000\r\nMessage-ID: <") != std::string::npos);
    BOOST_TEST(d.find("@mx.example.test>\r\n\r\nbody\r\n") != std::string::npos);
}

// Blanks before the colon (RFC 5322 4.5 obsolete syntax) still name the field: a client's
// "Date :" and "Message-ID :" are not doubled by ours, its "Return-Path :" is dropped, and
// "Received :" counts as a hop.
BOOST_AUTO_TEST_CASE(fields_with_blanks_before_the_colon_are_recognised) {
    Fixture f(Role::Submission, true);
    f.submitUntilData();
    const std::string header = "Date : Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID\t: <a@b>\r\n";
    BOOST_TEST(f.data("Return-Path : <forged@x.test>\r\n" + header + "Subject: hi\r\n\r\nbody\r\n.\r\n")
                   .find("250 2.0.0") == 0);
    const std::string& d = f.sink.committed.at(0).data;
    BOOST_TEST(d.find("forged") == std::string::npos);
    BOOST_TEST(d.find(header + "Subject: hi\r\n\r\nbody") != std::string::npos, d);
    BOOST_TEST(d.find("Date: ") == std::string::npos);  // not added
    BOOST_TEST(d.find("Message-ID: ") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(bare_lf_smuggling_rejected_whole) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    f.cmd("DATA");
    std::string rest;
    std::string reply = f.data("Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
                               "DATA\r\nsmuggled\r\n.\r\nNOOP\r\n",
                               &rest);
    BOOST_TEST(reply.find("554 5.6.0") == 0);
    BOOST_TEST(rest == "NOOP\r\n");
    BOOST_TEST(f.sink.committed.empty());
}

BOOST_AUTO_TEST_CASE(size_limits) {
    Fixture f;
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> SIZE=5000") == "552 5.3.4 Message size exceeds fixed limit\r\n");
    f.cmd("MAIL FROM:<x@remote.test> SIZE=10");
    f.cmd("RCPT TO:<alice@example.test>");
    f.cmd("DATA");
    BOOST_TEST(f.data(std::string(1200, 'a') + "\r\n.\r\n").find("552 5.3.4") == 0);
    BOOST_TEST(f.sink.committed.empty());
}

BOOST_AUTO_TEST_CASE(too_many_recipients) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    for (int i = 0; i < 3; ++i) BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "452 4.5.3 Too many recipients\r\n");
}

BOOST_AUTO_TEST_CASE(too_many_errors_disconnects) {
    Fixture f;
    f.settings.maxErrors = 3;
    f.cmd("EHLO c");
    f.cmd("BAD1");
    f.cmd("BAD2");
    SmtpOutput out = f.s->onLine("BAD3");
    BOOST_TEST(out.bytes.find("421 4.7.0") != std::string::npos);
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
    BOOST_TEST(f.s->isClosed());
    BOOST_TEST(!f.s->closedByQuit());  // a refusal: the connection lingers for unread input
}

BOOST_AUTO_TEST_CASE(junk_commands_past_the_limit_count_as_errors) {
    Fixture f;
    f.settings.maxJunkCommands = 4;
    f.settings.maxErrors = 3;
    BOOST_TEST(f.cmd("EHLO c").find("250") == 0);  // 1
    BOOST_TEST(f.cmd("NOOP") == "250 2.0.0 Ok\r\n");    // 2
    BOOST_TEST(f.cmd("RSET") == "250 2.0.0 Ok\r\n");    // 3
    BOOST_TEST(f.cmd("VRFY x").find("252") == 0);   // 4: the limit
    // A message accepted starts the count again.
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    f.cmd("DATA");
    BOOST_TEST(f.data("Subject: a\r\n\r\nx\r\n.\r\n").find("250 2.0.0") == 0);
    for (int i = 0; i < 4; ++i) BOOST_TEST(f.cmd("NOOP") == "250 2.0.0 Ok\r\n");
    // Past it each one is answered and counted as an error: the third error ends the session.
    BOOST_TEST(f.cmd("HELP").find("214") == 0);
    BOOST_TEST(f.cmd("EHLO c").find("250") == 0);
    SmtpOutput out = f.s->onLine("NOOP");
    BOOST_TEST(out.bytes == "250 2.0.0 Ok\r\n421 4.7.0 Too many errors, closing connection\r\n");
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
    BOOST_TEST(f.s->isClosed());
}

BOOST_AUTO_TEST_CASE(recipients_past_the_overshoot_limit_count_as_errors) {
    Fixture f;  // maxRecipients 3
    f.settings.maxRecipientOvershoot = 2;
    f.settings.maxErrors = 2;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    for (int i = 0; i < 3; ++i) BOOST_TEST(f.cmd("RCPT TO:<alice@example.test>").find("250") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "452 4.5.3 Too many recipients\r\n");  // overshoot 1
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "452 4.5.3 Too many recipients\r\n");  // 2: the limit
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "452 4.5.3 Too many recipients\r\n");  // error 1
    SmtpOutput out = f.s->onLine("RCPT TO:<bob@example.test>");                               // error 2
    BOOST_TEST(out.bytes.find("421 4.7.0") != std::string::npos);
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
}

BOOST_AUTO_TEST_CASE(no_junk_limit_when_zero) {
    Fixture f;
    f.settings.maxJunkCommands = 0;
    f.settings.maxErrors = 2;
    f.cmd("EHLO c");
    for (int i = 0; i < 500; ++i) BOOST_REQUIRE_EQUAL(f.cmd("NOOP"), "250 2.0.0 Ok\r\n");
    BOOST_TEST(!f.s->isClosed());
}

BOOST_AUTO_TEST_CASE(timeout_in_data_delivers_nothing) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    f.cmd("RCPT TO:<alice@example.test>");
    f.cmd("DATA");
    f.data("Subject: half\r\n");
    SmtpOutput out = f.s->onTimeout();
    BOOST_TEST(out.bytes.find("421 4.4.2") == 0);
    BOOST_TEST(f.sink.committed.empty());
}

// ---- CHUNKING / BDAT (RFC 3030), BINARYMIME, LIMITS (RFC 9422), postmaster ------------

namespace {
const std::string kReceived =
    "Received: from c ([192.0.2.7])\r\n\tby mx.example.test (Postern) with ESMTP id sid.1\r\n"
    "\tfor <alice@example.test>; Fri, 27 Nov 2026 21:45:30 +0000\r\n";
// One BDAT command and its octets, as a client pipelines them: the reply of the chunk and
// what was not consumed.
std::string bdat(Fixture& f, const std::string& line, const std::string& octets, std::string* rest = nullptr) {
    std::string out = f.cmd(line);
    if (!f.s->inData()) {
        if (rest) *rest = octets;
        return out;
    }
    std::string r;
    out += f.data(octets, &r);
    if (rest) *rest = r;
    return out;
}
void envelope(Fixture& f, const std::string& mailParams = "") {
    f.cmd("EHLO c");
    BOOST_REQUIRE_EQUAL(f.cmd("MAIL FROM:<x@remote.test>" + mailParams), "250 2.1.0 Ok\r\n");
    BOOST_REQUIRE_EQUAL(f.cmd("RCPT TO:<alice@example.test>"), "250 2.1.5 Ok\r\n");
}
}  // namespace

BOOST_AUTO_TEST_CASE(ehlo_offers_chunking_binarymime_limits) {
    Fixture f;
    f.settings.maxTransactions = 7;
    std::string ehlo = f.cmd("EHLO c");
    BOOST_TEST(ehlo.find("250-CHUNKING\r\n") != std::string::npos);
    BOOST_TEST(ehlo.find("250-BINARYMIME\r\n") != std::string::npos);
    BOOST_TEST(ehlo.find("250-LIMITS RCPTMAX=3 MAILMAX=7\r\n") != std::string::npos);
    f.settings.maxTransactions = 0;  // no limit: no MAILMAX
    ehlo = f.cmd("EHLO c");
    BOOST_TEST(ehlo.find("250-LIMITS RCPTMAX=3\r\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(mailmax_is_enforced) {
    Fixture f;
    f.settings.maxTransactions = 2;
    f.cmd("EHLO c");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    f.cmd("RSET");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    f.cmd("RSET");
    SmtpOutput out = f.s->onLine("MAIL FROM:<x@remote.test>");
    BOOST_TEST(out.bytes == "421 4.7.0 Too many transactions in this session, closing\r\n");
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
}

BOOST_AUTO_TEST_CASE(bdat_chunks_stored_byte_exact) {
    Fixture f;
    envelope(f, " BODY=BINARYMIME");
    const std::string part1 = std::string("Subject: bin\r\n\r\n.dot\n") + '\0' + "bare\rCR";
    const std::string part2("\r\n.\r\nend\r\n");
    std::string rest;
    BOOST_TEST(bdat(f, "BDAT " + std::to_string(part1.size()), part1 + "BDAT", &rest) ==
               "250 2.0.0 " + std::to_string(part1.size()) + " octets received\r\n");
    BOOST_TEST(rest == "BDAT");  // exactly n octets consumed
    BOOST_TEST((f.s->state() == SmtpState::Bdat));
    BOOST_TEST(bdat(f, "BDAT " + std::to_string(part2.size()) + " LAST", part2) == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].data == kReceived + part1 + part2);
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
}

BOOST_AUTO_TEST_CASE(bdat_zero_last_ends_the_message) {
    Fixture f;
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 3", "a\r\n") == "250 2.0.0 3 octets received\r\n");
    BOOST_TEST(f.cmd("BDAT 0 LAST") == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].data == kReceived + "a\r\n");
    // An empty message by BDAT 0 LAST alone is a message too.
    envelope(f);
    BOOST_TEST(f.cmd("BDAT 0 LAST") == "250 2.0.0 Ok: queued as Q2\r\n");
}

BOOST_AUTO_TEST_CASE(bdat_sequence_rules) {
    Fixture f;
    // Without MAIL/RCPT: 503, and the octets are still consumed.
    f.cmd("EHLO c");
    std::string rest;
    BOOST_TEST(bdat(f, "BDAT 6", "NOOP\r\nNOOP\r\n", &rest) == "503 5.5.1 Error: need MAIL command\r\n");
    BOOST_TEST(rest == "NOOP\r\n");
    f.cmd("MAIL FROM:<x@remote.test>");
    BOOST_TEST(bdat(f, "BDAT 2 LAST", "xy") == "503 5.5.1 Error: need RCPT command\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Mail));
    f.cmd("RCPT TO:<alice@example.test>");
    BOOST_TEST(bdat(f, "BDAT 2", "xy") == "250 2.0.0 2 octets received\r\n");
    // DATA, RCPT and MAIL after BDAT: out of sequence.
    BOOST_TEST(f.cmd("DATA") == "503 5.5.1 Error: DATA not allowed after BDAT\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<bob@example.test>") == "503 5.5.1 Error: RCPT not allowed after BDAT\r\n");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "503 5.5.1 Error: nested MAIL command\r\n");
    BOOST_TEST(f.cmd("NOOP") == "250 2.0.0 Ok\r\n");
    // RSET drops the unfinished message.
    BOOST_TEST(f.cmd("RSET") == "250 2.0.0 Ok\r\n");
    BOOST_TEST(bdat(f, "BDAT 1 LAST", "z") == "503 5.5.1 Error: need MAIL command\r\n");
    BOOST_TEST(f.sink.committed.empty());
}

BOOST_AUTO_TEST_CASE(binarymime_only_with_bdat) {
    Fixture f;
    envelope(f, " BODY=BINARYMIME");
    BOOST_TEST(f.cmd("DATA") == "503 5.5.1 Error: BODY=BINARYMIME requires BDAT\r\n");
    BOOST_TEST(bdat(f, "BDAT 4 LAST", std::string("a\0\n\r", 4)) == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].data == kReceived + std::string("a\0\n\r", 4));
}

// RFC 3030 3: without BODY=BINARYMIME the content is still CRLF lines of at most
// smtp.max_line_length octets, as DATA demands: the chunk that breaks it gets DataReader's
// 554 5.6.0 and ends the transaction (later chunks get 503), nothing is stored.
BOOST_AUTO_TEST_CASE(bdat_without_binarymime_needs_crlf_lines) {
    Fixture f;
    f.settings.maxMessageSize = 100000;  // the line limit, not the size limit, is under test
    envelope(f, " BODY=8BITMIME");
    // CRLF split across two chunks is a line end.
    BOOST_TEST(bdat(f, "BDAT 8", "Subj: x\r") == "250 2.0.0 8 octets received\r\n");
    BOOST_TEST(bdat(f, "BDAT 3", "\n\r\n") == "250 2.0.0 3 octets received\r\n");
    std::string rest;
    BOOST_TEST(bdat(f, "BDAT 4", "a\nb\n" "NOOP\r\n", &rest) == "554 5.6.0 Message contains bare CR or LF\r\n");
    BOOST_TEST(rest == "NOOP\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    BOOST_TEST(bdat(f, "BDAT 3 LAST", "c\r\n") == "503 5.5.1 Error: need MAIL command\r\n");

    // A CR the last chunk ends with has no LF.
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 3 LAST", "ab\r") == "554 5.6.0 Message contains bare CR or LF\r\n");

    // A line over smtp.max_line_length (1000 with its CRLF), spread over two chunks.
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 600", std::string(600, 'a')) == "250 2.0.0 600 octets received\r\n");
    BOOST_TEST(bdat(f, "BDAT 401 LAST", std::string(399, 'a') + "\r\n") == "554 5.6.0 Message line too long\r\n");
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 600", std::string(600, 'a')) == "250 2.0.0 600 octets received\r\n");
    BOOST_TEST(bdat(f, "BDAT 400 LAST", std::string(398, 'a') + "\r\n") == "250 2.0.0 Ok: queued as Q1\r\n");

    // A message that does not end in CRLF is not refused for it (as DATA cannot tell).
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 9 LAST", "a: b\r\n\r\nc") == "250 2.0.0 Ok: queued as Q2\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 2u);
}

BOOST_AUTO_TEST_CASE(bdat_size_limit_while_chunks_arrive) {
    Fixture f;  // maxMessageSize 1000
    envelope(f);
    BOOST_TEST(bdat(f, "BDAT 600", std::string(600, 'a')) == "250 2.0.0 600 octets received\r\n");
    std::string rest;
    BOOST_TEST(bdat(f, "BDAT 600", std::string(600, 'b') + "NOOP\r\n", &rest) ==
               "552 5.3.4 Message size exceeds fixed limit\r\n");
    BOOST_TEST(rest == "NOOP\r\n");
    BOOST_TEST((f.s->state() == SmtpState::Greeted));
    BOOST_TEST(bdat(f, "BDAT 5 LAST", "ccccc") == "503 5.5.1 Error: need MAIL command\r\n");
    BOOST_TEST(f.sink.committed.empty());
}

BOOST_AUTO_TEST_CASE(bdat_bad_syntax_closes) {
    Fixture f;
    envelope(f);
    SmtpOutput out = f.s->onLine("BDAT x");
    BOOST_TEST(out.bytes == "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
    BOOST_TEST((out.action == SmtpOutput::Action::Close));
    BOOST_TEST(f.s->isClosed());
}

BOOST_AUTO_TEST_CASE(bdat_one_octet_chunks_on_submission_get_date_and_message_id) {
    Fixture f(Role::Submission, /*tls=*/true);
    f.cmd("EHLO c");
    f.login();
    f.cmd("MAIL FROM:<alice@example.test>");
    f.cmd("RCPT TO:<bob@example.test>");
    const std::string msg = "Subject: s\r\n\r\nbody\r\n";
    for (char c : msg) BOOST_TEST(bdat(f, "BDAT 1", std::string(1, c)) == "250 2.0.0 1 octets received\r\n");
    BOOST_TEST(f.cmd("BDAT 0 LAST") == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    const std::string& d = f.sink.committed[0].data;
    const auto subject = d.find("Subject: s\r\nDate: Fri, 27 Nov 2026 21:45:30 +0000\r\nMessage-ID: <");
    BOOST_TEST(subject != std::string::npos);
    BOOST_TEST(d.ends_with(">\r\n\r\nbody\r\n"));
}

// A header-only BINARYMIME message without a final line end (kept exactly otherwise): the
// added Date and Message-ID start on a line of their own, never joined to its last line.
BOOST_AUTO_TEST_CASE(header_only_binarymime_without_line_end_keeps_its_last_field) {
    Fixture f(Role::Submission, /*tls=*/true);
    f.cmd("EHLO c");
    f.login();
    f.cmd("MAIL FROM:<alice@example.test> BODY=BINARYMIME");
    f.cmd("RCPT TO:<bob@example.test>");
    BOOST_TEST(bdat(f, "BDAT 22 LAST", "From: a@x\r\nSubject: hi") == "250 2.0.0 Ok: queued as Q1\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    const std::string& d = f.sink.committed[0].data;
    BOOST_TEST(d.find("From: a@x\r\nSubject: hi\r\nDate: Fri, 27 Nov 2026 21:45:30 +0000\r\nMessage-ID: <") !=
               std::string::npos, d);
}

BOOST_AUTO_TEST_CASE(timeout_between_chunks_delivers_nothing) {
    Fixture f;
    envelope(f);
    bdat(f, "BDAT 3", "abc");
    SmtpOutput out = f.s->onTimeout();
    BOOST_TEST(out.bytes.find("421 4.4.2") == 0);
    BOOST_TEST(f.sink.committed.empty());
}

BOOST_AUTO_TEST_CASE(postmaster_always_accepted) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    BOOST_TEST(f.cmd("RCPT TO:<Postmaster>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<POSTMASTER@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<postmaster@remote.test>") == "554 5.7.1 Relay access denied\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<abuse@example.test>") == "550 5.1.1 User unknown\r\n");
    f.cmd("DATA");
    f.data("Subject: pm\r\n\r\nhi\r\n.\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].env.localMailboxes ==
               (std::vector<std::string>{"mx.example.test/postmaster", "example.test/postmaster"}));
}

BOOST_AUTO_TEST_CASE(postmaster_and_abuse_to_configured_address) {
    Fixture f;
    f.settings.roles.postmaster = "bob@example.test";
    f.settings.roles.abuse = "Alice@example.test";
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@remote.test>");
    BOOST_TEST(f.cmd("RCPT TO:<postmaster>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<PostMaster@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<aBuse@example.test>") == "250 2.1.5 Ok\r\n");
    f.cmd("DATA");
    f.data("Subject: pm\r\n\r\nhi\r\n.\r\n");
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].env.localMailboxes ==
               (std::vector<std::string>{"example.test/bob", "example.test/alice"}));
}

// RFC 6531: SMTPUTF8 is always offered; a UTF-8 address needs the MAIL parameter.
BOOST_AUTO_TEST_CASE(smtputf8_offered_and_required_for_utf8_addresses) {
    Fixture f;
    BOOST_TEST(f.cmd("EHLO c").find("250-SMTPUTF8\r\n") != std::string::npos);
    BOOST_TEST(f.cmd("MAIL FROM:<j\xC3\xB6rg@remote.test>") ==
               "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter\r\n");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test>") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<j\xC3\xB6rg@example.test>") ==
               "553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter\r\n");
    BOOST_TEST(f.cmd("RSET") == "250 2.0.0 Ok\r\n");
    // Invalid UTF-8 is a syntax error of the path (RFC 6531 3.3 grammar): 501.
    BOOST_TEST(f.cmd("MAIL FROM:<j\xC0\xAFrg@remote.test> SMTPUTF8") == "501 5.1.7 Bad sender address syntax\r\n");
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> SMTPUTF8") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<j\xED\xA0\x80rg@example.test>") == "501 5.1.3 Bad recipient address syntax\r\n");
    BOOST_TEST(f.cmd("RCPT TO:<j\xC3\xB6rg@example.test>") == "250 2.1.5 Ok\r\n");
    BOOST_TEST(f.cmd("DATA").find("354") == 0);
    const std::string body = "Subject: gr\xC3\xBC\xC3\x9F" "e\r\n\r\nK\xC3\xA4se\r\n.\r\n";
    BOOST_TEST(f.data(body).find("250 2.0.0") == 0);
    BOOST_REQUIRE_EQUAL(f.sink.committed.size(), 1u);
    BOOST_TEST(f.sink.committed[0].env.smtpUtf8);
    BOOST_TEST(!f.sink.committed[0].env.requireTls);
    const std::string& d = f.sink.committed[0].data;
    BOOST_TEST(d.find("with UTF8SMTP id") != std::string::npos);  // RFC 6531 4.3
    BOOST_TEST(d.find("for <j\xC3\xB6rg@example.test>") != std::string::npos);
    BOOST_TEST(d.find("Subject: gr\xC3\xBC\xC3\x9F" "e\r\n\r\nK\xC3\xA4se\r\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(u_label_domain_is_looked_up_as_a_label) {
    Fixture f;
    f.cmd("EHLO c");
    f.cmd("MAIL FROM:<x@b\xC3\xBC" "cher.example> SMTPUTF8");
    // Domain not local: relay denied (unauthenticated), but parsed: the reply is policy, not syntax.
    BOOST_TEST(f.cmd("RCPT TO:<u@b\xC3\xBC" "cher.example>").find("554 5.7.1") == 0);
    BOOST_TEST(f.cmd("RCPT TO:<u@xn--zz.example>") == "501 5.1.3 Bad recipient address syntax\r\n");
}

// RFC 8689 4: REQUIRETLS only on TLS sessions, kept with the message.
BOOST_AUTO_TEST_CASE(requiretls_only_over_tls) {
    Fixture f;
    BOOST_TEST(f.cmd("EHLO c").find("REQUIRETLS") == std::string::npos);
    BOOST_TEST(f.cmd("MAIL FROM:<x@remote.test> REQUIRETLS") == "530 5.7.10 REQUIRETLS needs a TLS session\r\n");
    Fixture t(Role::Mx, true);
    BOOST_TEST(t.cmd("EHLO c").find("250-REQUIRETLS\r\n") != std::string::npos);
    BOOST_TEST(t.cmd("MAIL FROM:<x@remote.test> REQUIRETLS") == "250 2.1.0 Ok\r\n");
    BOOST_TEST(t.cmd("RCPT TO:<alice@example.test>") == "250 2.1.5 Ok\r\n");
    t.cmd("DATA");
    BOOST_TEST(t.data("Subject: x\r\n\r\nx\r\n.\r\n").find("250") == 0);
    BOOST_REQUIRE_EQUAL(t.sink.committed.size(), 1u);
    BOOST_TEST(t.sink.committed[0].env.requireTls);
    BOOST_TEST(!t.sink.committed[0].env.smtpUtf8);
}

BOOST_AUTO_TEST_SUITE_END()
