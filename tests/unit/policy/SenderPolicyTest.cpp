// Sender policy: submission needs AUTH; authenticated sessions may only use their own
// addresses (sender-login check); MX accepts any sender from unauthenticated clients.
#include "policy/SenderPolicy.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>
#include <string>

using namespace postern;
using policy::SenderContext;
using policy::SenderPolicy;
namespace bdata = boost::unit_test::data;

namespace {

struct SenderCase {
    std::string name;
    bool submission;
    bool authenticated;
    std::string path;
    std::string wire;  // "" = accepted
};
std::ostream& operator<<(std::ostream& o, const SenderCase& c) { return o << c.name; }

const std::string NotOwned = "553 5.7.1 Sender address rejected: not owned by user bob\r\n";

const SenderCase senderCases[] = {
    {"mx anon any sender", false, false, "<anyone@anywhere.example>", ""},
    {"mx anon null sender", false, false, "<>", ""},
    {"mx anon claims local user", false, false, "<bob@local.example>", ""},
    {"submission anon", true, false, "<bob@local.example>", "530 5.7.0 Authentication required\r\n"},
    {"submission anon null", true, false, "<>", "530 5.7.0 Authentication required\r\n"},
    {"submission own", true, true, "<bob@local.example>", ""},
    {"submission own alias", true, true, "<Bob.Smith@Local.Example>", ""},
    {"submission own case", true, true, "<BOB@LOCAL.EXAMPLE>", ""},
    {"submission own quoted", true, true, "<\"bob\"@local.example>", ""},
    {"submission own routed", true, true, "<@relay.example:bob@local.example>", ""},
    {"submission other", true, true, "<alice@local.example>", NotOwned},
    {"submission other domain", true, true, "<bob@other.example>", NotOwned},
    {"submission subdomain", true, true, "<bob@sub.local.example>", NotOwned},
    {"submission percent", true, true, "<bob%local.example@evil.example>", NotOwned},
    {"submission quoted at", true, true, "<\"bob@local.example\"@evil.example>", NotOwned},
    {"submission plus tag", true, true, "<bob+tag@local.example>", NotOwned},
    {"submission null", true, true, "<>",
     "553 5.7.1 Sender address rejected: null sender not allowed\r\n"},
    {"mx authenticated checked", false, true, "<alice@local.example>", NotOwned},
    {"mx authenticated own", false, true, "<bob@local.example>", ""},
    {"mx authenticated null", false, true, "<>", "553 5.7.1 Sender address rejected: null sender not allowed\r\n"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(sender_policy)

BOOST_DATA_TEST_CASE(sender_rules, bdata::make(senderCases), c) {
    core::AuthIdentity bob;
    bob.user = "bob";
    bob.senderAddresses = {"bob@local.example", "bob.smith@local.example"};
    SenderContext ctx{c.submission, c.authenticated ? &bob : nullptr};
    smtp::ParsedPath p = smtp::parsePath(c.path, smtp::PathKind::Reverse);
    BOOST_REQUIRE(p.ok);
    auto refusal = SenderPolicy::check(p, ctx);
    BOOST_TEST((refusal ? refusal->format(true) : std::string()) == c.wire);
}

BOOST_AUTO_TEST_CASE(identity_entries_compared_case_insensitively) {
    core::AuthIdentity bob;
    bob.user = "bob";
    bob.senderAddresses = {"Bob@Local.Example"};  // defensively lower-cased too
    SenderContext ctx{true, &bob};
    BOOST_TEST(!SenderPolicy::check(smtp::parsePath("<bob@local.example>", smtp::PathKind::Reverse), ctx));
}

BOOST_AUTO_TEST_CASE(no_sender_addresses_owns_nothing) {
    core::AuthIdentity bob;
    bob.user = "bob";
    SenderContext ctx{false, &bob};
    BOOST_TEST(SenderPolicy::check(smtp::parsePath("<bob@local.example>", smtp::PathKind::Reverse), ctx)
                   .has_value());
}

BOOST_AUTO_TEST_CASE(bad_path_is_rejected) {
    SenderContext ctx{false, nullptr};
    auto r = SenderPolicy::check(smtp::parsePath("<a@b.>", smtp::PathKind::Reverse), ctx);
    BOOST_REQUIRE(r.has_value());
    BOOST_TEST(r->format(true) == "501 5.1.7 Bad sender address syntax\r\n");
}

BOOST_AUTO_TEST_SUITE_END()
