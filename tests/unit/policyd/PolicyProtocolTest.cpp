// Policy delegation protocol: request text, response framing and parsing, the action
// language mapped to decisions (Postfix SMTPD_POLICY_README, access(5)).
#include "policyd/PolicyDelegation.h"
#include "policyd/PolicyProtocol.h"

#include <boost/test/unit_test.hpp>

#include <Poco/Net/IPAddress.h>

using namespace postern;
using namespace postern::policyd;
using Kind = core::PolicyDecision::Kind;

namespace {

core::PolicyFacts sampleFacts() {
    core::PolicyFacts f;
    f.sessionId = "abc";
    f.submission = true;
    f.extended = true;
    f.heloName = "client.example";
    f.sender = "ann@example.org";
    f.recipient = "bob@example.net";
    f.instance = "abc.1";
    f.client.ip = Poco::Net::IPAddress("192.0.2.7");
    f.client.port = 40000;
    f.serverAddress = "198.51.100.1";
    f.serverPort = 587;
    f.saslMethod = "PLAIN";
    f.saslUsername = "ann@example.org";
    f.size = 1234;
    return f;
}

std::string value(const Attributes& a, const std::string& name) {
    for (const auto& [n, v] : a)
        if (n == name) return v;
    return "<missing>";
}

}  // namespace

BOOST_AUTO_TEST_SUITE(policy_protocol)

BOOST_AUTO_TEST_CASE(request_has_postfix_attributes) {
    Attributes a = requestAttributes(sampleFacts());
    BOOST_TEST(a.front().first == "request");
    BOOST_TEST(value(a, "request") == "smtpd_access_policy");
    BOOST_TEST(value(a, "protocol_state") == "RCPT");
    BOOST_TEST(value(a, "protocol_name") == "ESMTP");
    BOOST_TEST(value(a, "helo_name") == "client.example");
    BOOST_TEST(value(a, "queue_id") == "");
    BOOST_TEST(value(a, "sender") == "ann@example.org");
    BOOST_TEST(value(a, "recipient") == "bob@example.net");
    BOOST_TEST(value(a, "recipient_count") == "0");
    BOOST_TEST(value(a, "client_address") == "192.0.2.7");
    BOOST_TEST(value(a, "client_name") == "unknown");
    BOOST_TEST(value(a, "reverse_client_name") == "unknown");
    BOOST_TEST(value(a, "instance") == "abc.1");
    BOOST_TEST(value(a, "sasl_method") == "PLAIN");
    BOOST_TEST(value(a, "sasl_username") == "ann@example.org");
    BOOST_TEST(value(a, "sasl_sender") == "");
    BOOST_TEST(value(a, "size") == "1234");
    BOOST_TEST(value(a, "ccert_subject") == "");
    BOOST_TEST(value(a, "encryption_protocol") == "");  // sampleFacts: no TLS
    BOOST_TEST(value(a, "encryption_keysize") == "0");
    core::PolicyFacts tls = sampleFacts();
    tls.tls = true;
    tls.tlsProtocol = "TLSv1.3";
    tls.tlsCipher = "TLS_AES_256_GCM_SHA384";
    tls.tlsCipherBits = 256;
    Attributes t = requestAttributes(tls);
    BOOST_TEST(value(t, "encryption_protocol") == "TLSv1.3");
    BOOST_TEST(value(t, "encryption_cipher") == "TLS_AES_256_GCM_SHA384");
    BOOST_TEST(value(t, "encryption_keysize") == "256");
    BOOST_TEST(value(a, "stress") == "");
    BOOST_TEST(value(a, "client_port") == "40000");
    BOOST_TEST(value(a, "policy_context") == "submission");
    BOOST_TEST(value(a, "server_address") == "198.51.100.1");
    BOOST_TEST(value(a, "server_port") == "587");
    core::PolicyFacts helo = sampleFacts();
    helo.extended = false;
    helo.submission = false;
    helo.serverPort = 0;
    Attributes b = requestAttributes(helo);
    BOOST_TEST(value(b, "protocol_name") == "SMTP");
    BOOST_TEST(value(b, "policy_context") == "mx");
    BOOST_TEST(value(b, "server_port") == "");
}

BOOST_AUTO_TEST_CASE(request_format_and_escaping) {
    BOOST_TEST(formatRequest({{"a", "1"}, {"b", ""}}) == "a=1\nb=\n\n");
    // A value can never end the line or the request early; '=' stays (split at the first).
    BOOST_TEST(formatRequest({{"helo_name", "x\nrecipient=evil@x\n\n"}}) == "helo_name=x?recipient=evil@x??\n\n");
    BOOST_TEST(formatRequest({{"v", "a=b=c"}}) == "v=a=b=c\n\n");
    BOOST_TEST(wireValue(std::string("a\r\nb\0c", 6)) == "a??b?c");
    // Whole request: one line per attribute, exactly one empty line at the end.
    std::string req = formatRequest(requestAttributes(sampleFacts()));
    BOOST_TEST(req.size() > 2u);
    BOOST_TEST(req.substr(req.size() - 2) == "\n\n");
    BOOST_TEST(req.find("\n\n") == req.size() - 2);
}

BOOST_AUTO_TEST_CASE(response_framing) {
    BOOST_TEST(responseLength("") == 0u);
    BOOST_TEST(responseLength("action=DUNNO\n") == 0u);
    BOOST_TEST(responseLength("action=DUNNO") == 0u);
    BOOST_TEST(responseLength("action=DUNNO\n\n") == 14u);
    BOOST_TEST(responseLength("action=DUNNO\r\n\r\n") == 16u);
    BOOST_TEST(responseLength("action=DUNNO\n\nnext") == 14u);
    BOOST_TEST(responseLength("\n") == 1u);  // an empty response (parse refuses it)
    BOOST_TEST(responseLength("a=1\nb=2\n\n") == 9u);
}

BOOST_AUTO_TEST_CASE(response_parsing) {
    Response r = parseResponse("action=DUNNO\n\n");
    BOOST_TEST(r.ok);
    BOOST_TEST(r.action == "DUNNO");
    r = parseResponse("action=REJECT not=here\r\n\r\n");
    BOOST_TEST(r.ok);
    BOOST_TEST(r.action == "REJECT not=here");
    // Other attributes are ignored; the first action counts.
    r = parseResponse("foo=bar\naction=OK\naction=REJECT\n\n");
    BOOST_TEST(r.ok);
    BOOST_TEST(r.action == "OK");
    r = parseResponse("action=\n\n");
    BOOST_TEST(r.ok);
    BOOST_TEST(r.action == "");
    BOOST_TEST(parseResponse("\n").error == "empty_response");
    BOOST_TEST(parseResponse("").error == "empty_response");
    BOOST_TEST(parseResponse("foo=bar\n\n").error == "no_action");
    BOOST_TEST(parseResponse("garbage\n\n").error == "malformed_line");
    BOOST_TEST(parseResponse("=DUNNO\n\n").error == "malformed_line");
    BOOST_TEST(parseResponse("Action=DUNNO\n\n").error == "no_action");  // names are case-sensitive
}

BOOST_AUTO_TEST_CASE(continue_actions) {
    for (const char* a : {"OK", "ok", "DUNNO", "dunno", "  DUNNO  ", "DEFER_IF_REJECT later", "OK whatever"}) {
        ActionResult r = interpretAction(a);
        BOOST_TEST_INFO(a);
        BOOST_TEST((r.status == ActionStatus::Known));
        BOOST_TEST((r.decision.kind == Kind::Continue));
    }
}

BOOST_AUTO_TEST_CASE(reject_and_defer) {
    ActionResult r = interpretAction("REJECT");
    BOOST_TEST((r.decision.kind == Kind::Refuse));
    BOOST_TEST(r.decision.code == 550);
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "Access denied");
    r = interpretAction("reject Over quota");
    BOOST_TEST(r.decision.code == 550);
    BOOST_TEST(r.decision.text == "Over quota");
    BOOST_TEST(r.decision.action == "reject Over quota");
    r = interpretAction("DEFER come back later");
    BOOST_TEST(r.decision.code == 450);
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "come back later");
    r = interpretAction("DEFER_IF_PERMIT Greylisted");
    BOOST_TEST(r.decision.code == 450);
    BOOST_TEST(r.decision.text == "Greylisted");
    BOOST_TEST(interpretAction("DEFER").decision.text == "Service temporarily unavailable");
    // A leading enhanced code is the refusal's own (postfwd, policyd-spf, postgrey answer
    // so), not text after x.7.1 ("550 5.7.1 5.7.23 ..." before); its class follows the reply.
    r = interpretAction("REJECT 5.7.23 SPF fail");
    BOOST_TEST(r.decision.code == 550);
    BOOST_TEST(r.decision.enhanced == 723);
    BOOST_TEST(r.decision.text == "SPF fail");
    r = interpretAction("DEFER_IF_PERMIT 4.2.0 Greylisted");
    BOOST_TEST(r.decision.code == 450);
    BOOST_TEST(r.decision.enhanced == 200);
    BOOST_TEST(r.decision.text == "Greylisted");
    r = interpretAction("DEFER 5.7.1 wrong class");
    BOOST_TEST(r.decision.code == 450);
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "wrong class");
}

BOOST_AUTO_TEST_CASE(numeric_replies) {
    ActionResult r = interpretAction("450 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/x.html");
    BOOST_TEST((r.status == ActionStatus::Known));
    BOOST_TEST((r.decision.kind == Kind::Refuse));
    BOOST_TEST(r.decision.code == 450);
    BOOST_TEST(r.decision.enhanced == 200);
    BOOST_TEST(r.decision.text == "Greylisted, see http://postgrey.schweikert.ch/help/x.html");
    r = interpretAction("554 Spam source");
    BOOST_TEST(r.decision.code == 554);
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "Spam source");
    r = interpretAction("550 5.7.26 Unauthenticated mail");
    BOOST_TEST(r.decision.enhanced == 726);
    // A class that contradicts the code: the code's class is used (Reply has no class of its own).
    r = interpretAction("451 5.7.1 mismatch");
    BOOST_TEST(r.decision.code == 451);
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "mismatch");
    r = interpretAction("550");
    BOOST_TEST(r.decision.text == "Access denied");
    // Not an enhanced code: stays in the text.
    r = interpretAction("550 5.7 short");
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "5.7 short");
    r = interpretAction("550 5.1.1x text");
    BOOST_TEST(r.decision.text == "5.1.1x text");
    // Detail past 99 cannot be represented: x.7.1, text kept.
    r = interpretAction("550 5.7.123 long detail");
    BOOST_TEST(r.decision.enhanced == 701);
    BOOST_TEST(r.decision.text == "long detail");
    // 421/521 would mean "closing": Postern keeps the session, so they are answered as 450/550.
    BOOST_TEST(interpretAction("421 4.3.2 go away").decision.code == 450);
    BOOST_TEST(interpretAction("521 5.3.2 go away").decision.code == 550);
    // Out of range or not three digits: not an action.
    for (const char* a : {"250 ok", "350 x", "600 x", "45 x", "4500 x", "4x0 x", "450text"}) {
        BOOST_TEST_INFO(a);
        BOOST_TEST((interpretAction(a).status == ActionStatus::Unknown));
    }
    // Control characters in a text cannot split the reply.
    BOOST_TEST(interpretAction(std::string("550 a\rb", 7)).decision.text == "a?b");
}

BOOST_AUTO_TEST_CASE(prepend_hold_discard) {
    ActionResult r = interpretAction("PREPEND X-Greylist: delayed 1 seconds by postgrey");
    BOOST_TEST((r.status == ActionStatus::Known));
    BOOST_TEST((r.decision.kind == Kind::Prepend));
    BOOST_TEST(r.decision.header == "X-Greylist: delayed 1 seconds by postgrey");
    BOOST_TEST((interpretAction("PREPEND X-Empty:").decision.kind == Kind::Prepend));
    for (const char* a : {"PREPEND", "PREPEND no colon here", "PREPEND : value", "PREPEND Bad Name: v"}) {
        BOOST_TEST_INFO(a);
        BOOST_TEST((interpretAction(a).status == ActionStatus::Malformed));
    }
    r = interpretAction("HOLD suspicious volume");
    BOOST_TEST((r.decision.kind == Kind::Hold));
    BOOST_TEST(r.decision.text == "suspicious volume");
    r = interpretAction("discard");
    BOOST_TEST((r.decision.kind == Kind::Discard));
    BOOST_TEST(r.decision.text == "");
}

BOOST_AUTO_TEST_CASE(unsupported_unknown_and_log_only) {
    for (const char* a : {"FILTER smtp:[127.0.0.1]:10025", "REDIRECT x@example.org", "BCC y@example.org"}) {
        ActionResult r = interpretAction(a);
        BOOST_TEST_INFO(a);
        BOOST_TEST((r.status == ActionStatus::Unsupported));
        BOOST_TEST((r.decision.kind == Kind::Continue));
    }
    ActionResult w = interpretAction("WARN odd client");
    BOOST_TEST((w.status == ActionStatus::Known));
    BOOST_TEST((w.decision.kind == Kind::Continue));
    BOOST_TEST(w.note == "odd client");
    for (const char* a : {"permit", "reject_unknown_client_hostname", "SOMETHING", "x y z"}) {
        BOOST_TEST_INFO(a);
        BOOST_TEST((interpretAction(a).status == ActionStatus::Unknown));
    }
    BOOST_TEST((interpretAction("").status == ActionStatus::Malformed));
    BOOST_TEST((interpretAction("   ").status == ActionStatus::Malformed));
}

BOOST_AUTO_TEST_CASE(default_action_validation) {
    std::string error;
    auto d = PolicyDelegation::parseDefaultAction("451 4.3.5 Server configuration problem", error);
    BOOST_REQUIRE(d.has_value());
    BOOST_TEST(d->code == 451);
    BOOST_TEST(d->enhanced == 305);
    BOOST_TEST(PolicyDelegation::parseDefaultAction("DUNNO", error).has_value());
    BOOST_TEST(!PolicyDelegation::parseDefaultAction("bogus", error).has_value());
    BOOST_TEST(!PolicyDelegation::parseDefaultAction("PREPEND X: y", error).has_value());
    PolicyDelegationSettings s;
    s.defaultAction = "nonsense";
    BOOST_CHECK_THROW(PolicyDelegation{s}, std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(endpoints) {
    std::string error;
    auto e = PolicyEndpoint::parse("inet:127.0.0.1:10023", error);
    BOOST_REQUIRE(e.has_value());
    BOOST_TEST(e->host == "127.0.0.1");
    BOOST_TEST(e->port == 10023);
    BOOST_TEST(e->describe() == "inet:127.0.0.1:10023");
    e = PolicyEndpoint::parse("inet:[::1]:9998", error);
    BOOST_REQUIRE(e.has_value());
    BOOST_TEST(e->host == "::1");
    BOOST_TEST(e->describe() == "inet:[::1]:9998");
    e = PolicyEndpoint::parse("unix:/var/run/postgrey.sock", error);
    BOOST_REQUIRE(e.has_value());
    BOOST_TEST(e->path == "/var/run/postgrey.sock");
    for (const char* bad : {"127.0.0.1:10023", "inet:host", "inet::25", "inet:h:0", "inet:h:65536", "inet:h:1x",
                            "unix:relative", "unix:", "tcp:h:1"}) {
        BOOST_TEST_INFO(bad);
        BOOST_TEST(!PolicyEndpoint::parse(bad, error).has_value());
    }
}

BOOST_AUTO_TEST_SUITE_END()
