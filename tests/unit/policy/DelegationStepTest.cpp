// The policy delegation step of TransactionPolicy::decideRecipient: asked only for recipients
// our own rules accept, its refusal becomes the RCPT reply, its PREPEND/HOLD/DISCARD ride
// along, and a refused recipient is not counted against the outbound limits.
#include "policy/TransactionPolicy.h"

#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

using namespace postern;
using policy::RcptVerdict;
using policy::RecipientContext;
using policy::RecipientRequest;
using policy::TransactionPolicy;
using Kind = core::PolicyDecision::Kind;

namespace {

class Directory : public core::UserDirectory {
public:
    core::Answer isLocalDomain(const std::string& d) override {
        return d == "local.example" ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& a) override {
        core::RecipientLookup r;
        r.answer = a == "bob@local.example" ? core::Answer::Yes : core::Answer::No;
        if (r.answer == core::Answer::Yes) r.mailboxes = {"local.example/bob"};
        return r;
    }
};

class Limiter : public core::OutboundLimiter {
public:
    int recipients = 0;
    core::LimitAnswer addMessage(const core::ClientAddress&, const core::AuthIdentity*, std::string&) override {
        return core::LimitAnswer::Allow;
    }
    core::LimitAnswer addRecipients(const core::ClientAddress&, const core::AuthIdentity*, std::uint32_t n,
                                    std::string&) override {
        recipients += static_cast<int>(n);
        return core::LimitAnswer::Allow;
    }
};

class Delegate : public core::PolicyDelegate {
public:
    core::PolicyDecision answer;
    std::vector<std::string> asked;
    core::PolicyDecision check(const core::PolicyFacts& f) override {
        asked.push_back(f.recipient);
        return answer;
    }
};

smtp::ParsedPath path(const std::string& p, smtp::PathKind kind = smtp::PathKind::Forward) {
    smtp::ParsedPath r = smtp::parsePath(p, kind);
    BOOST_REQUIRE_MESSAGE(r.ok, p);
    return r;
}

struct World {
    Directory dir;
    Limiter limiter;
    Delegate delegate;
    core::ClientAddress addr;
    core::AuthIdentity alice{"alice@local.example", {"alice@local.example"}, "", {}};

    RcptVerdict rcpt(const std::string& to, bool authenticated) {
        smtp::ParsedPath sender = path("<alice@local.example>", smtp::PathKind::Reverse);
        core::PolicyFacts facts;
        facts.recipient = to;
        RecipientRequest req{RecipientContext{authenticated, addr, dir, nullptr, "local.example"}, sender, true,
                             authenticated ? &alice : nullptr, &limiter};
        req.delegate = &delegate;
        req.facts = &facts;
        return TransactionPolicy::decideRecipient(path("<" + to + ">"), req);
    }
};

core::PolicyDecision refuse(int code, int enh, std::string text, std::string action = "x") {
    core::PolicyDecision d;
    d.kind = Kind::Refuse;
    d.code = code;
    d.enhanced = enh;
    d.text = std::move(text);
    d.action = std::move(action);
    return d;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(delegation_step)

BOOST_AUTO_TEST_CASE(asked_only_after_our_rules_accept) {
    World w;
    w.delegate.answer.kind = Kind::Continue;  // OK never overrides our refusal
    RcptVerdict v = w.rcpt("nobody@local.example", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Reject));
    BOOST_TEST(v.reason == "unknown_user");
    v = w.rcpt("x@remote.example", false);
    BOOST_TEST(v.reason == "relay_denied");
    BOOST_TEST(w.delegate.asked.empty());
    v = w.rcpt("bob@local.example", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(w.delegate.asked.size() == 1u);
}

BOOST_AUTO_TEST_CASE(refusals_become_the_reply_and_are_not_counted) {
    World w;
    w.delegate.answer = refuse(550, 701, "Over quota", "REJECT Over quota");
    RcptVerdict v = w.rcpt("x@remote.example", true);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Reject));
    BOOST_TEST(v.reason == "policy");
    BOOST_TEST(v.reply.format(true) == "550 5.7.1 Over quota\r\n");
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(v.delegated.action == "REJECT Over quota");
    BOOST_TEST(w.limiter.recipients == 0);

    w.delegate.answer = refuse(450, 200, "Greylisted");
    v = w.rcpt("x@remote.example", true);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reply.format(true) == "450 4.2.0 Greylisted\r\n");

    w.delegate.answer = refuse(451, 305, "Server configuration problem", "default");
    v = w.rcpt("bob@local.example", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reason == "policy_default");
    BOOST_TEST(v.reply.format(true) == "451 4.3.5 Server configuration problem\r\n");
    BOOST_TEST(v.mailboxes.empty());
    BOOST_TEST(w.limiter.recipients == 0);
}

BOOST_AUTO_TEST_CASE(actions_ride_along_with_an_accept) {
    World w;
    w.delegate.answer.kind = Kind::Prepend;
    w.delegate.answer.header = "X-Policy: yes";
    RcptVerdict v = w.rcpt("x@remote.example", true);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST((v.delegated.kind == Kind::Prepend));
    BOOST_TEST(v.delegated.header == "X-Policy: yes");
    BOOST_TEST(v.forwards.size() == 1u);
    BOOST_TEST(w.limiter.recipients == 1);
    w.delegate.answer = {};
    w.delegate.answer.kind = Kind::Hold;
    v = w.rcpt("x@remote.example", true);
    BOOST_TEST((v.delegated.kind == Kind::Hold));
}

BOOST_AUTO_TEST_SUITE_END()
