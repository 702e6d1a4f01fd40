// Relay policy over fake ports: every relay trick is refused on an unauthenticated MX
// session; local lookups and grants map yes / no / tempfail to the right replies.
#include "policy/RelayPolicy.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <map>
#include <ostream>
#include <set>
#include <string>

using namespace postern;
using policy::RcptVerdict;
using policy::RecipientContext;
using policy::RelayPolicy;
namespace bdata = boost::unit_test::data;

namespace {

class FakeDirectory : public core::UserDirectory {
public:
    std::set<std::string> localDomains{"local.example", "other-local.example"};
    bool domainTempFail = false;
    std::map<std::string, core::RecipientLookup> users;
    core::Answer unknownAnswer = core::Answer::No;
    std::vector<std::string> lookedUp;

    FakeDirectory() {
        core::RecipientLookup bob;
        bob.answer = core::Answer::Yes;
        bob.mailboxes = {"local.example/bob"};
        users["bob@local.example"] = bob;
        core::RecipientLookup alias;
        alias.answer = core::Answer::Yes;
        alias.mailboxes = {"local.example/bob"};
        alias.forwards = {"carol@remote.example"};
        users["team@local.example"] = alias;
        core::RecipientLookup pm;
        pm.answer = core::Answer::Yes;
        pm.mailboxes = {"local.example/admin"};
        users["postmaster@local.example"] = pm;
        core::RecipientLookup tf;
        tf.answer = core::Answer::TempFail;
        users["flaky@local.example"] = tf;
    }
    core::Answer isLocalDomain(const std::string& domain) override {
        if (domainTempFail)
            return core::Answer::TempFail;
        return localDomains.count(domain) ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& address) override {
        lookedUp.push_back(address);
        auto it = users.find(address);
        if (it != users.end())
            return it->second;
        core::RecipientLookup r;
        r.answer = unknownAnswer;
        return r;
    }
};

class FakeGrants : public core::GrantStore {
public:
    core::Answer answer = core::Answer::No;
    int lookups = 0;
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress&, const core::Grant&) override { return true; }
    std::string sender;  // what the last lookup was asked for
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress&, const std::string& from, core::Grant* out) override {
        ++lookups;
        sender = from;
        if (answer == core::Answer::Yes && out)
            out->user = "granted-user";
        return answer;
    }
};

core::ClientAddress client() {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress("192.0.2.7");
    return c;
}

RcptVerdict decide(const std::string& path, bool authenticated, FakeDirectory& dir, FakeGrants* grants,
                   const std::string& postmasterDomain = "local.example") {
    smtp::ParsedPath p = smtp::parsePath(path, smtp::PathKind::Forward);
    BOOST_REQUIRE_MESSAGE(p.ok, path << ": " << p.message);
    core::ClientAddress c = client();
    RecipientContext ctx{authenticated, c, dir, grants, postmasterDomain};
    return RelayPolicy::decide(p, ctx);
}

using Kind = RcptVerdict::Kind;

struct TrickCase {
    std::string path;
    std::string wire;  // expected reply
};
std::ostream& operator<<(std::ostream& o, const TrickCase& c) { return o << c.path; }

// An unauthenticated MX session without a grant must never relay. Tricks aimed at a local
// domain are "user unknown"; anything whose parsed domain is remote is "relay denied".
const TrickCase relayTricks[] = {
    {"<carol@remote.example>", "554 5.7.1 Relay access denied\r\n"},
    {"<Carol@REMOTE.example>", "554 5.7.1 Relay access denied\r\n"},
    {"<carol%remote.example@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<\"carol%remote.example\"@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<remote.example!carol@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<\"remote.example!carol\"@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<\"carol@remote.example\"@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<\"carol@remote.example\"@other-local.example>", "550 5.1.1 User unknown\r\n"},
    {"<\"bob@local.example\"@local.example>", "550 5.1.1 User unknown\r\n"},
    {"<@local.example:carol@remote.example>", "554 5.7.1 Relay access denied\r\n"},
    {"<@local.example,@other-local.example:carol@remote.example>", "554 5.7.1 Relay access denied\r\n"},
    {"<carol@[192.0.2.99]>", "554 5.7.1 Relay access denied\r\n"},
    {"<carol@[IPv6:2001:db8::99]>", "554 5.7.1 Relay access denied\r\n"},
    {"<carol@local.example.remote.example>", "554 5.7.1 Relay access denied\r\n"},
    {"<carol@sub.local.example>", "554 5.7.1 Relay access denied\r\n"},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(relay_policy)

BOOST_DATA_TEST_CASE(relay_tricks_denied_unauthenticated, bdata::make(relayTricks), c) {
    FakeDirectory dir;
    FakeGrants grants;
    RcptVerdict v = decide(c.path, false, dir, &grants);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.format(true) == c.wire);
    BOOST_TEST(v.mailboxes.empty());
    BOOST_TEST(v.forwards.empty());
    // Routing local parts are refused before any lookup: never a mailbox of ours.
    for (const auto& a : dir.lookedUp)
        BOOST_TEST(a.find_first_of("%!") == std::string::npos);
}

BOOST_DATA_TEST_CASE(relay_tricks_denied_without_grant_store, bdata::make(relayTricks), c) {
    FakeDirectory dir;
    RcptVerdict v = decide(c.path, false, dir, nullptr);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.format(true) == c.wire);
}

BOOST_AUTO_TEST_CASE(local_recipient) {
    FakeDirectory dir;
    FakeGrants grants;
    RcptVerdict v = decide("<bob@Local.Example>", false, dir, &grants);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.isLocal);
    BOOST_TEST(v.reply.format(true) == "250 2.1.5 Ok\r\n");
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"local.example/bob"});
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(grants.lookups == 0);  // local delivery never asks the grant store
    BOOST_TEST(dir.lookedUp == std::vector<std::string>{"bob@local.example"});
}

BOOST_AUTO_TEST_CASE(local_alias_with_remote_forward) {
    FakeDirectory dir;
    RcptVerdict v = decide("<team@local.example>", false, dir, nullptr);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.forwards == std::vector<std::string>{"carol@remote.example"});
}

BOOST_AUTO_TEST_CASE(local_unknown_and_tempfail) {
    FakeDirectory dir;
    FakeGrants grants;
    grants.answer = core::Answer::Yes;  // a grant must not turn a local "no" into a yes
    RcptVerdict v = decide("<nobody@local.example>", false, dir, &grants);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.format(true) == "550 5.1.1 User unknown\r\n");
    BOOST_TEST(grants.lookups == 0);

    v = decide("<flaky@local.example>", true, dir, &grants);
    BOOST_TEST((v.kind == Kind::TempFail));
    BOOST_TEST(v.reply.format(true) == "451 4.3.0 Temporary failure, try again later\r\n");

    dir.domainTempFail = true;
    v = decide("<bob@local.example>", true, dir, &grants);
    BOOST_TEST((v.kind == Kind::TempFail));
    BOOST_TEST(v.reply.code == 451);
    // Even an authenticated client is not relayed when we cannot tell local from remote.
    v = decide("<carol@remote.example>", true, dir, &grants);
    BOOST_TEST((v.kind == Kind::TempFail));
}

BOOST_AUTO_TEST_CASE(authenticated_relays_without_grant_lookup) {
    FakeDirectory dir;
    FakeGrants grants;
    RcptVerdict v = decide("<@ignored.example:Carol@Remote.Example>", true, dir, &grants);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(!v.isLocal);
    BOOST_TEST(v.forwards == std::vector<std::string>{"Carol@remote.example"});
    BOOST_TEST(!v.viaGrant);
    BOOST_TEST(grants.lookups == 0);
    // Authentication does not make a routing local part deliverable.
    v = decide("<carol%remote.example@local.example>", true, dir, &grants);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.code == 550);
}

struct GrantCase {
    core::Answer answer;
    Kind kind;
    std::string wire;
};
std::ostream& operator<<(std::ostream& o, const GrantCase& c) { return o << static_cast<int>(c.answer); }
const GrantCase grantCases[] = {
    {core::Answer::Yes, Kind::Accept, "250 2.1.5 Ok\r\n"},
    {core::Answer::No, Kind::Reject, "554 5.7.1 Relay access denied\r\n"},
    {core::Answer::TempFail, Kind::TempFail, "451 4.7.1 Cannot check relay permission now, try again later\r\n"},
};

BOOST_DATA_TEST_CASE(pop_before_smtp_grant, bdata::make(grantCases), c) {
    FakeDirectory dir;
    FakeGrants grants;
    grants.answer = c.answer;
    RcptVerdict v = decide("<carol@remote.example>", false, dir, &grants);
    BOOST_TEST((v.kind == c.kind));
    BOOST_TEST(v.reply.format(true) == c.wire);
    BOOST_TEST(grants.lookups == 1);
    BOOST_TEST(v.viaGrant == (c.answer == core::Answer::Yes));
    if (c.answer == core::Answer::Yes) {
        BOOST_TEST(v.grantUser == "granted-user");
        BOOST_TEST(v.forwards == std::vector<std::string>{"carol@remote.example"});
    } else {
        BOOST_TEST(v.forwards.empty());
    }
}

BOOST_AUTO_TEST_CASE(the_grant_store_is_asked_for_the_mail_from) {
    // Several users may hold grants for one (NAT) address: the store picks by MAIL FROM.
    FakeDirectory dir;
    FakeGrants grants;
    grants.answer = core::Answer::Yes;
    smtp::ParsedPath p = smtp::parsePath("<carol@remote.example>", smtp::PathKind::Forward);
    core::ClientAddress c = client();
    RecipientContext ctx{false, c, dir, &grants, "local.example"};
    RcptVerdict v = RelayPolicy::decide(p, ctx, "Ann@Local.Example");
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(grants.sender == "Ann@Local.Example");
    v = RelayPolicy::decide(p, ctx);  // <>
    BOOST_TEST(grants.sender.empty());
}

BOOST_AUTO_TEST_CASE(postmaster) {
    FakeDirectory dir;
    RcptVerdict v = decide("<Postmaster>", false, dir, nullptr);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"local.example/admin"});
    v = decide("<postmaster>", false, dir, nullptr, "");
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.code == 550);
    // RFC 5321 4.5.1: always accepted, also when the directory has no postmaster of that
    // domain: the domain's own postmaster mailbox (no address configured).
    v = decide("<postmaster>", false, dir, nullptr, "nowhere.example");
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"nowhere.example/postmaster"});
    // postmaster@ the server's own name (not a hosted domain) is that same mailbox, in any
    // case (it was refused as a relay attempt, 554).
    v = decide("<PostMaster@Nowhere.Example>", false, dir, nullptr, "nowhere.example");
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"nowhere.example/postmaster"});
    v = decide("<abuse@nowhere.example>", false, dir, nullptr, "nowhere.example");
    BOOST_TEST((v.kind == Kind::Reject));  // only postmaster: the name is not a hosted domain
}

namespace {
RcptVerdict decideRoles(const std::string& path, bool authenticated, FakeDirectory& dir,
                        const policy::RoleAddresses& roles) {
    smtp::ParsedPath p = smtp::parsePath(path, smtp::PathKind::Forward);
    BOOST_REQUIRE_MESSAGE(p.ok, path << ": " << p.message);
    core::ClientAddress c = client();
    RecipientContext ctx{authenticated, c, dir, nullptr, "local.example"};
    ctx.roles = roles;
    return RelayPolicy::decide(p, ctx);
}
}  // namespace

BOOST_AUTO_TEST_CASE(postmaster_of_every_local_domain) {
    FakeDirectory dir;  // has postmaster@local.example, not postmaster@other-local.example
    policy::RoleAddresses none;
    // The directory's own postmaster wins.
    RcptVerdict v = decideRoles("<postmaster@local.example>", false, dir, none);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"local.example/admin"});
    // No such account: the domain's own mailbox.
    v = decideRoles("<POSTMASTER@other-local.example>", false, dir, none);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.reason == "postmaster");
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"other-local.example/postmaster"});
    // Configured local address: looked up (aliases expanded).
    policy::RoleAddresses roles{"team@local.example", "bob@local.example"};
    v = decideRoles("<postmaster@other-local.example>", false, dir, roles);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"local.example/bob"});
    BOOST_TEST(v.forwards == std::vector<std::string>{"carol@remote.example"});
    // abuse: configured -> there; not configured -> an ordinary unknown user.
    v = decideRoles("<Abuse@other-local.example>", false, dir, roles);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.reason == "abuse");
    BOOST_TEST(v.mailboxes == std::vector<std::string>{"local.example/bob"});
    v = decideRoles("<abuse@other-local.example>", false, dir, none);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.code == 550);
    // A remote configured address is forwarded.
    policy::RoleAddresses remote{"noc@remote.example", ""};
    v = decideRoles("<postmaster@other-local.example>", false, dir, remote);
    BOOST_TEST((v.kind == Kind::Accept));
    BOOST_TEST(v.forwards == std::vector<std::string>{"noc@remote.example"});
    BOOST_TEST(v.mailboxes.empty());
    // A configured local address that does not exist: 451 4.3.5, never a bounce.
    policy::RoleAddresses broken{"nobody@local.example", ""};
    v = decideRoles("<postmaster@other-local.example>", false, dir, broken);
    BOOST_TEST((v.kind == Kind::TempFail));
    BOOST_TEST(v.reply.format(true) == "451 4.3.5 Temporary local problem, try again later\r\n");
    BOOST_TEST(v.reason == "role_target_unknown");
    // Directory down: 451 4.3.0, not the role address.
    dir.unknownAnswer = core::Answer::TempFail;
    v = decideRoles("<postmaster@other-local.example>", false, dir, roles);
    BOOST_TEST((v.kind == Kind::TempFail));
    BOOST_TEST(v.reason == "directory_tempfail");
}

BOOST_AUTO_TEST_CASE(role_addresses_are_never_a_relay_path) {
    FakeDirectory dir;
    policy::RoleAddresses roles{"bob@local.example", "bob@local.example"};
    for (const char* path : {"<postmaster@foreign.example>", "<abuse@foreign.example>",
                             "<postmaster%foreign.example@local.example>", "<\"postmaster@foreign.example\"@local.example>"}) {
        RcptVerdict v = decideRoles(path, false, dir, roles);
        BOOST_TEST((v.kind == Kind::Reject), path);
        BOOST_TEST(v.mailboxes.empty());
        BOOST_TEST(v.forwards.empty());
    }
}

BOOST_AUTO_TEST_CASE(bad_path_is_rejected) {
    FakeDirectory dir;
    smtp::ParsedPath bad = smtp::parsePath("<a@b.>", smtp::PathKind::Forward);
    core::ClientAddress c = client();
    RecipientContext ctx{true, c, dir, nullptr, "local.example"};
    RcptVerdict v = RelayPolicy::decide(bad, ctx);
    BOOST_TEST((v.kind == Kind::Reject));
    BOOST_TEST(v.reply.code == 501);
}

BOOST_AUTO_TEST_CASE(default_verdict_fails_closed) {
    RcptVerdict v;
    BOOST_TEST((v.kind == Kind::TempFail));
    BOOST_TEST(v.reply.code == 451);
}

BOOST_AUTO_TEST_SUITE_END()
