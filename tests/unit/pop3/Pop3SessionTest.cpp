#include "pop3/Pop3Session.h"

#include "Pop3Fakes.h"
#include "sasl/Base64.h"

#include <boost/test/unit_test.hpp>

using namespace postern;
using namespace postern::pop3;
using namespace postern::pop3::test;
using Action = Pop3Output::Action;

namespace {
std::string b64(std::string_view s) { return sasl::encodeBase64(s); }
const std::string PlainBob = b64(std::string("\0bob\0secret", 11));      // AGJvYgBzZWNyZXQ=
const std::string PlainBobWrong = b64(std::string("\0bob\0wrong", 10));
}  // namespace

BOOST_FIXTURE_TEST_SUITE(pop3_session, Pop3Fixture)

BOOST_AUTO_TEST_CASE(capa_without_tls_offers_no_plaintext_login) {
    settings.tlsAvailable = true;
    auto s = session();
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: CAPA
        S: +OK Capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: STLS
        S: IMPLEMENTATION Postern
        S: .
        C: USER bob
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections; use STLS
        C: AUTH PLAIN AGJvYgBzZWNyZXQ=
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections; use STLS
    )");
    BOOST_TEST(auth.requests.empty());
    BOOST_TEST(s->stateName() == "authorization");
}

BOOST_AUTO_TEST_CASE(capa_over_implicit_tls_offers_login_but_not_stls) {
    settings.tlsAvailable = true;
    auto s = session(/*tls=*/true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: capa
        S: +OK Capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: SASL PLAIN LOGIN
        S: IMPLEMENTATION Postern
        S: .
        C: STLS
        S: -ERR Command not permitted when TLS active
    )");
}

BOOST_AUTO_TEST_CASE(stls_starts_tls_and_resets_state) {
    settings.tlsAvailable = true;
    settings.allowPlaintextAuth = true;  // so USER is accepted before TLS
    auto s = session();
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: STLS
        S: +OK Begin TLS negotiation
    )");
    BOOST_TEST((outputs.back().action == Action::StartTls));
    s->onTlsStarted();
    // RFC 2595 4: the USER given before TLS is forgotten; STLS is not offered again.
    run(*s, R"(
        C: PASS secret
        S: -ERR Send USER first
        C: CAPA
        S: +OK Capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: USER
        S: SASL PLAIN LOGIN
        S: IMPLEMENTATION Postern
        S: .
        C: STLS
        S: -ERR Command not permitted when TLS active
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
    )", false);
    BOOST_TEST(auth.requests.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_line_between_stls_and_the_handshake_closes) {
    settings.tlsAvailable = true;
    auto s = session();
    BOOST_TEST((s->onLine("STLS").action == Action::StartTls));
    auto out = s->onLine("USER injected");
    BOOST_TEST((out.action == Action::Close));
    BOOST_TEST(out.bytes.empty());
    BOOST_TEST(s->isClosed());
}

BOOST_AUTO_TEST_CASE(stls_unavailable) {
    auto s = session();
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: STLS
        S: -ERR STLS not available
        C: USER bob
        S: -ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections
    )");
}

BOOST_AUTO_TEST_CASE(full_transaction_golden) {
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: STAT
        S: -ERR Command not valid in this state
        C: PASS secret
        S: -ERR Send USER first
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: CAPA
        S: +OK Capability list follows
        S: TOP
        S: UIDL
        S: RESP-CODES
        S: AUTH-RESP-CODE
        S: PIPELINING
        S: IMPLEMENTATION Postern
        S: .
        C: USER bob
        S: -ERR Command not valid in this state
        C: STAT
        S: +OK 2 94
        C: LIST
        S: +OK 2 messages (94 octets)
        S: 1 65
        S: 2 29
        S: .
        C: LIST 2
        S: +OK 2 29
        C: LIST 3
        S: -ERR No such message
        C: UIDL
        S: +OK Unique-ID listing follows
        S: 1 uid-one
        S: 2 uid-two
        S: .
        C: UIDL 1
        S: +OK 1 uid-one
        C: RETR 1
        S: +OK 65 octets
        S: From: a@example.org
        S: Subject: one
        S:
        S: Hello
        S: ..hidden dot
        S: ..
        S: bye
        S: .
        C: RETR 2
        S: +OK 29 octets
        S: Subject: two
        S:
        S: no final crlf
        S: .
        C: TOP 1 0
        S: +OK Top of message follows
        S: From: a@example.org
        S: Subject: one
        S:
        S: .
        C: TOP 1 2
        S: +OK Top of message follows
        S: From: a@example.org
        S: Subject: one
        S:
        S: Hello
        S: ..hidden dot
        S: .
        C: TOP 2 99
        S: +OK Top of message follows
        S: Subject: two
        S:
        S: no final crlf
        S: .
        C: NOOP
        S: +OK
        C: DELE 1
        S: +OK Message 1 deleted
        C: DELE 1
        S: -ERR Message 1 already deleted
        C: RETR 1
        S: -ERR Message 1 already deleted
        C: TOP 1 1
        S: -ERR Message 1 already deleted
        C: LIST 1
        S: -ERR Message 1 already deleted
        C: UIDL 1
        S: -ERR Message 1 already deleted
        C: STAT
        S: +OK 1 29
        C: LIST
        S: +OK 1 messages (29 octets)
        S: 2 29
        S: .
        C: UIDL
        S: +OK Unique-ID listing follows
        S: 2 uid-two
        S: .
        C: RSET
        S: +OK Maildrop has 2 messages (94 octets)
        C: DELE 2
        S: +OK Message 2 deleted
        C: QUIT
        S: +OK Postern POP3 server signing off (1 messages deleted)
    )");
    BOOST_TEST((outputs.back().action == Action::Close));
    BOOST_TEST(s->isClosed());
    BOOST_TEST(s->stateName() == "update");
    BOOST_TEST(maildrops.expunged["bob"] == std::vector<std::size_t>{1});
    BOOST_TEST(maildrops.locked.empty());
    BOOST_TEST((s->onLine("NOOP").action == Action::Close));
    // The request reached the auth service with the right service and client.
    BOOST_REQUIRE(auth.requests.size() == 1u);
    BOOST_TEST(auth.requests[0].service == "pop3");
    BOOST_TEST(auth.requests[0].client.host() == "192.0.2.7");
    BOOST_TEST(auth.requests[0].sessionId == "s1");
}

BOOST_AUTO_TEST_CASE(quit_without_deletions_does_not_expunge) {
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: DELE 1
        S: +OK Message 1 deleted
        C: RSET
        S: +OK Maildrop has 2 messages (94 octets)
        C: QUIT
        S: +OK Postern POP3 server signing off (0 messages deleted)
    )");
    BOOST_TEST(maildrops.expungeCalls == 0);
}

BOOST_AUTO_TEST_CASE(drop_deletes_nothing_and_releases_the_lock) {
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: DELE 1
        S: +OK Message 1 deleted
        C: DELE 2
        S: +OK Message 2 deleted
    )");
    BOOST_TEST(maildrops.locked.count("bob") == 1u);
    s->onDisconnect();
    BOOST_TEST(maildrops.expungeCalls == 0);
    BOOST_TEST(maildrops.locked.empty());
    BOOST_TEST(s->isClosed());
}

BOOST_AUTO_TEST_CASE(destroying_the_session_releases_the_lock_without_deleting) {
    {
        auto s = session(true);
        s->onLine("USER bob");
        s->onLine("PASS secret");
        s->onLine("DELE 1");
        BOOST_TEST(maildrops.locked.count("bob") == 1u);
    }
    BOOST_TEST(maildrops.locked.empty());
    BOOST_TEST(maildrops.expungeCalls == 0);
}

BOOST_AUTO_TEST_CASE(expunge_failure_is_sys_temp) {
    maildrops.expungeFails = true;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: DELE 1
        S: +OK Message 1 deleted
        C: QUIT
        S: -ERR [SYS/TEMP] Some deleted messages not removed
    )");
    BOOST_TEST((outputs.back().action == Action::Close));
    BOOST_TEST(maildrops.locked.empty());
}

BOOST_AUTO_TEST_CASE(read_failure_is_sys_temp) {
    maildrops.readFails = true;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: RETR 1
        S: -ERR [SYS/TEMP] Unable to read message, try again later
        C: TOP 1 1
        S: -ERR [SYS/TEMP] Unable to read message, try again later
    )");
}

BOOST_AUTO_TEST_CASE(a_message_gone_since_the_snapshot_is_not_sys_temp) {
    maildrops.readGone = true;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: RETR 2
        S: -ERR Message 2 no longer exists
        C: TOP 1 0
        S: -ERR Message 1 no longer exists
    )");
}

BOOST_AUTO_TEST_CASE(a_symlink_or_fifo_in_the_maildir_is_sys_perm) {
    maildrops.readNotAFile = true;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: RETR 1
        S: -ERR [SYS/PERM] Message 1 cannot be read
    )");
}

BOOST_AUTO_TEST_CASE(bare_auth_lists_the_mechanisms_and_is_no_error) {
    settings.tlsAvailable = true;
    settings.maxBadCommands = 1;
    auto s = session();
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: AUTH
        S: +OK
        S: .
        C: AUTH
        S: +OK
        S: .
    )");
    BOOST_TEST(!s->isClosed());
    settings.maxBadCommands = 10;
    auto t = session(/*tls=*/true);
    run(*t, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: AUTH
        S: +OK
        S: PLAIN
        S: LOGIN
        S: .
        C: AUTH PLAIN AGJvYgBzZWNyZXQ=
        S: +OK Logged in, 2 messages (94 octets)
        C: AUTH
        S: -ERR Command not valid in this state
    )");
}

BOOST_AUTO_TEST_CASE(wrong_password_tempfail_in_use_and_maildrop_failure) {
    auto s = session(true);
    maildrops.locked.insert("alice");
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS wrong
        S: -ERR [AUTH] Authentication failed
        C: PASS secret
        S: -ERR Send USER first
        C: USER tempfail
        S: +OK Send PASS
        C: PASS whatever
        S: -ERR [SYS/TEMP] Authentication temporarily unavailable, try again later
        C: USER alice
        S: +OK Send PASS
        C: PASS wonder
        S: -ERR [IN-USE] Maildrop is locked by another session
    )");
    BOOST_TEST(grants.grants.empty());
    BOOST_TEST(s->stateName() == "authorization");
    maildrops.tempFail = true;
    run(*s, R"(
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: -ERR [SYS/TEMP] Unable to open maildrop, try again later
    )", false);
    BOOST_TEST(grants.grants.empty());
    maildrops.tempFail = false;
    run(*s, R"(
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
    )", false);
    BOOST_TEST(s->stateName() == "transaction");
}

BOOST_AUTO_TEST_CASE(grant_is_made_on_success_only) {
    auto s = session(true);
    s->onLine("USER bob");
    s->onLine("PASS wrong");
    BOOST_TEST(grants.grants.empty());
    s->onLine("USER bob");
    s->onLine("PASS secret");
    BOOST_REQUIRE(grants.grants.size() == 1u);
    BOOST_TEST(grants.grants[0].first == "192.0.2.7");
    BOOST_TEST(grants.grants[0].second == "bob");
}

BOOST_AUTO_TEST_CASE(failed_grant_does_not_fail_the_login) {
    grants.result = false;
    auto s = session(true);
    s->onLine("USER bob");
    BOOST_TEST(s->onLine("PASS secret").bytes == "+OK Logged in, 2 messages (94 octets)\r\n");
    BOOST_TEST(grants.grants.size() == 1u);
    BOOST_TEST(s->stateName() == "transaction");
}

BOOST_AUTO_TEST_CASE(no_grant_when_lifetime_zero_or_no_store) {
    settings.grantLifetime = std::chrono::seconds(0);
    {
        auto s = session(true);
        s->onLine("USER bob");
        BOOST_TEST(s->onLine("PASS secret").bytes.starts_with("+OK Logged in"));
    }
    settings.grantLifetime = std::chrono::seconds(600);
    {
        auto s = session(true, /*withGrants=*/false);
        s->onLine("USER bob");
        BOOST_TEST(s->onLine("PASS secret").bytes.starts_with("+OK Logged in"));
    }
    BOOST_TEST(grants.grants.empty());
}

BOOST_AUTO_TEST_CASE(auth_plain_with_initial_response) {
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: AUTH PLAIN AGJvYgBzZWNyZXQ=
        S: +OK Logged in, 2 messages (94 octets)
    )");
    BOOST_REQUIRE(auth.requests.size() == 1u);
    BOOST_TEST(auth.requests[0].user == "bob");
    BOOST_TEST(auth.requests[0].password == "secret");
    BOOST_TEST(grants.grants.size() == 1u);
}

BOOST_AUTO_TEST_CASE(auth_plain_with_empty_challenge) {
    auto s = session(true);
    run(*s, "S: +OK pop.example.org Postern POP3 server ready\n"
            "C: auth plain\n"
            "S: + \n"
            "C: " + PlainBob + "\n"
            "S: +OK Logged in, 2 messages (94 octets)\n");
}

BOOST_AUTO_TEST_CASE(auth_login_challenges) {
    auto s = session(true);
    run(*s, "S: +OK pop.example.org Postern POP3 server ready\n"
            "C: AUTH LOGIN\n"
            "S: + VXNlcm5hbWU6\n"
            "C: " + b64("bob") + "\n"
            "S: + UGFzc3dvcmQ6\n"
            "C: " + b64("secret") + "\n"
            "S: +OK Logged in, 2 messages (94 octets)\n");
    BOOST_TEST(auth.requests.at(0).user == "bob");
}

BOOST_AUTO_TEST_CASE(auth_wrong_password_cancel_bad_base64_and_unknown_mechanism) {
    auto s = session(true);
    run(*s, "S: +OK pop.example.org Postern POP3 server ready\n"
            "C: AUTH PLAIN " + PlainBobWrong + "\n"
            "S: -ERR [AUTH] Authentication failed\n"
            "C: AUTH LOGIN\n"
            "S: + VXNlcm5hbWU6\n"
            "C: *\n"
            "S: -ERR Authentication cancelled\n"
            "C: AUTH PLAIN\n"
            "S: + \n"
            "C: not-base64!\n"
            "S: -ERR Invalid base64 data\n"
            "C: AUTH PLAIN " + b64(std::string("nonul", 5)) + "\n"
            "S: -ERR Invalid SASL response\n"
            "C: AUTH PLAIN " + b64(std::string("admin\0bob\0secret", 16)) + "\n"
            "S: -ERR [AUTH] Authentication failed\n"
            "C: AUTH CRAM-MD5\n"
            "S: -ERR Unsupported authentication mechanism\n"
            "C: AUTH PLAIN " + b64(std::string("\0tempfail\0x", 11)) + "\n"
            "S: -ERR [SYS/TEMP] Authentication temporarily unavailable, try again later\n");
    BOOST_TEST(s->stateName() == "authorization");
    BOOST_TEST(grants.grants.empty());
    // Only the wrong password and the tempfail reached the auth service.
    BOOST_TEST(auth.requests.size() == 2u);
}

BOOST_AUTO_TEST_CASE(auth_in_use) {
    maildrops.locked.insert("bob");
    auto s = session(true);
    run(*s, "S: +OK pop.example.org Postern POP3 server ready\n"
            "C: AUTH PLAIN " + PlainBob + "\n"
            "S: -ERR [IN-USE] Maildrop is locked by another session\n");
    BOOST_TEST(grants.grants.empty());
}

BOOST_AUTO_TEST_CASE(plaintext_allowed_by_config_without_tls) {
    settings.allowPlaintextAuth = true;
    auto s = session(false);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
    )");
}

BOOST_AUTO_TEST_CASE(password_with_spaces_is_passed_whole) {
    auth.users["carol"] = {"correct horse battery", "carol"};
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER carol
        S: +OK Send PASS
        C: PASS correct horse battery
        S: +OK Logged in, 0 messages (0 octets)
        C: LIST
        S: +OK 0 messages (0 octets)
        S: .
        C: RETR 1
        S: -ERR No such message
    )");
}

BOOST_AUTO_TEST_CASE(too_many_bad_commands_close) {
    settings.maxBadCommands = 3;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: HELO
        S: -ERR Unknown command
        C: LIST x
        S: -ERR Invalid message number
        C: USER bob
        S: +OK Send PASS
        C: PASS wrong
        S: -ERR too many errors
    )");
    BOOST_TEST((outputs.back().action == Action::Close));
    BOOST_TEST(s->isClosed());
}

// AUTH cancelled with "*" is a bad command (as in SMTP): it cannot loop forever.
BOOST_AUTO_TEST_CASE(cancelled_auth_counts_as_a_bad_command) {
    settings.maxBadCommands = 3;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: AUTH PLAIN
        S: + 
        C: *
        S: -ERR Authentication cancelled
        C: AUTH LOGIN
        S: + VXNlcm5hbWU6
        C: *
        S: -ERR Authentication cancelled
        C: AUTH PLAIN
        S: + 
        C: *
        S: -ERR too many errors
    )");
    BOOST_TEST((outputs.back().action == Action::Close));
}

BOOST_AUTO_TEST_CASE(too_many_errors_in_transaction_deletes_nothing) {
    settings.maxBadCommands = 2;
    auto s = session(true);
    run(*s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 2 messages (94 octets)
        C: DELE 1
        S: +OK Message 1 deleted
        C: BOGUS
        S: -ERR Unknown command
        C: RETR 0
        S: -ERR too many errors
    )");
    BOOST_TEST(maildrops.expungeCalls == 0);
    BOOST_TEST(maildrops.locked.empty());
}

BOOST_AUTO_TEST_CASE(quit_in_authorization_and_long_lines) {
    auto s = session(true);
    run(*s, "S: +OK pop.example.org Postern POP3 server ready\n"
            "C: USER " + std::string(300, 'a') + "\n"
            "S: -ERR Command line too long\n"
            "C: QUIT\n"
            "S: +OK Postern POP3 server signing off\n");
    BOOST_TEST((outputs.back().action == Action::Close));
    BOOST_TEST(maildrops.opened.empty());
}

BOOST_AUTO_TEST_CASE(sasl_responses_may_exceed_the_command_limit) {
    // RFC 5034 4: the 255-octet limit is for commands, not for SASL responses.
    auth.users["bob"].first = std::string(300, 'p');
    auto s = session(true);
    s->onLine("AUTH PLAIN");
    auto out = s->onLine(b64(std::string("\0bob\0", 5) + std::string(300, 'p')));
    BOOST_TEST(out.bytes == "+OK Logged in, 2 messages (94 octets)\r\n");
}



// ---- the cluster's one-step login port (core::Pop3Login): the session asks it instead of
// the maildrop service and the grant store, and flags the auth request for it.
namespace {
class FakeLogin : public core::Pop3Login {
public:
    core::Pop3LoginOutcome open(const core::AuthRequest& r, const core::AuthIdentity& id, bool grant,
                                core::MaildropPtr& out) override {
        calls.push_back({r.user, id.mailbox, grant});
        core::Pop3LoginOutcome o;
        o.status = status;
        o.grantFailed = grantFailed;
        if (status == core::Pop3LoginOutcome::Status::Ok) maildrops.open(id.mailbox, out);
        return o;
    }
    struct Call {
        std::string user, mailbox;
        bool grant;
    };
    std::vector<Call> calls;
    core::Pop3LoginOutcome::Status status = core::Pop3LoginOutcome::Status::Ok;
    bool grantFailed = false;
    FakeMaildrops maildrops;
};
}  // namespace

// An account held as compromised still reads its mail, but gets no POP-before-SMTP grant
// (a stolen password held at SMTP MAIL must not relay through POP3 instead); through the
// cluster's one-step port the grant is not asked for.
BOOST_AUTO_TEST_CASE(held_account_logs_in_without_a_grant) {
    struct Held final : core::AccountHold {
        bool isHeld(std::string_view user) const override { return user == "bob"; }
    } held;
    Pop3Ports ports{auth, maildrops, &grants};
    ports.hold = &held;
    Pop3Session s(settings, ports, context(true));
    s.onLine("USER bob");
    BOOST_TEST(s.onLine("PASS secret").bytes == "+OK Logged in, 2 messages (94 octets)\r\n");
    BOOST_TEST(grants.grants.empty());
    settings.allowPlaintextAuth = true;
    FakeLogin login;
    login.maildrops.boxes["bob"] = {{"uid-one", Message1}};
    Pop3Ports cluster{auth, maildrops, &grants, &login};
    cluster.hold = &held;
    Pop3Session c(settings, cluster, context(true));
    c.onLine("USER bob");
    BOOST_TEST(c.onLine("PASS secret").bytes.starts_with("+OK Logged in"));
    BOOST_REQUIRE(login.calls.size() == 1u);
    BOOST_TEST(!login.calls[0].grant);
}

BOOST_AUTO_TEST_CASE(an_excluded_address_logs_in_without_a_grant) {
    // A balancer's own address or pop_before_smtp.exclude_networks (the connection says why).
    SessionContext ctx = context(true);
    ctx.noGrant = "excluded_network";
    Pop3Session s(settings, Pop3Ports{auth, maildrops, &grants}, ctx);
    s.onLine("USER bob");
    BOOST_TEST(s.onLine("PASS secret").bytes == "+OK Logged in, 2 messages (94 octets)\r\n");
    BOOST_TEST(grants.grants.empty());
    settings.allowPlaintextAuth = true;
    FakeLogin login;
    login.maildrops.boxes["bob"] = {{"uid-one", Message1}};
    Pop3Session c(settings, Pop3Ports{auth, maildrops, &grants, &login}, ctx);
    c.onLine("USER bob");
    BOOST_TEST(c.onLine("PASS secret").bytes.starts_with("+OK Logged in"));
    BOOST_REQUIRE(login.calls.size() == 1u);
    BOOST_TEST(!login.calls[0].grant);  // the one-statement login is asked for no grant
}

BOOST_AUTO_TEST_CASE(login_port_takes_lease_and_grant_in_one_step) {
    settings.allowPlaintextAuth = true;
    FakeLogin login;
    login.maildrops.boxes["bob"] = {{"uid-one", Message1}};
    Pop3Session s(settings, Pop3Ports{auth, maildrops, &grants, &login}, context(true));
    run(s, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: +OK Logged in, 1 messages (65 octets)
    )");
    BOOST_REQUIRE(auth.requests.size() == 1u);
    BOOST_TEST(auth.requests[0].penaltyCheckedByCaller);
    BOOST_REQUIRE(login.calls.size() == 1u);
    BOOST_TEST(login.calls[0].mailbox == "bob");
    BOOST_TEST(login.calls[0].grant);
    BOOST_TEST(maildrops.opened.empty());  // not asked: the port opened it
    BOOST_TEST(grants.grants.empty());     // not asked: the port made the grant
}

BOOST_AUTO_TEST_CASE(login_port_blocked_in_use_tempfail) {
    settings.allowPlaintextAuth = true;
    FakeLogin login;
    login.status = core::Pop3LoginOutcome::Status::Blocked;
    Pop3Session blocked(settings, Pop3Ports{auth, maildrops, &grants, &login}, context(true));
    run(blocked, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: -ERR [SYS/TEMP] Too many failed logins, try again later
    )");
    BOOST_TEST((outputs.back().action == Action::Close));

    login.status = core::Pop3LoginOutcome::Status::InUse;
    Pop3Session inUse(settings, Pop3Ports{auth, maildrops, &grants, &login}, context(true));
    run(inUse, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: -ERR [IN-USE] Maildrop is locked by another session
    )");

    login.status = core::Pop3LoginOutcome::Status::TempFail;
    Pop3Session temp(settings, Pop3Ports{auth, maildrops, &grants, &login}, context(true));
    run(temp, R"(
        S: +OK pop.example.org Postern POP3 server ready
        C: USER bob
        S: +OK Send PASS
        C: PASS secret
        S: -ERR [SYS/TEMP] Unable to open maildrop, try again later
    )");
    BOOST_TEST(grants.grants.empty());
}

BOOST_AUTO_TEST_SUITE_END()
