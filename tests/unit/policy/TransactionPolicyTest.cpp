// The one-call verdicts for MAIL and RCPT: sender rules, relay rules, the grant's own-senders
// rule and the outbound limits, with fake ports.
#include "policy/TransactionPolicy.h"

#include <boost/test/unit_test.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace postern;
using policy::RcptVerdict;
using policy::RecipientContext;
using policy::RecipientRequest;
using policy::SenderRequest;
using policy::TransactionPolicy;

namespace {

class Directory : public core::UserDirectory {
public:
    std::uint64_t quota = 1000;
    core::Answer isLocalDomain(const std::string& d) override {
        return d == "local.example" ? core::Answer::Yes : core::Answer::No;
    }
    core::RecipientLookup lookupRecipient(const std::string& a) override {
        core::RecipientLookup r;
        const bool list = a == "team@local.example";
        const bool postmaster = a == "postmaster@local.example";
        r.answer = a == "bob@local.example" || list || postmaster ? core::Answer::Yes : core::Answer::No;
        if (a == "bob@local.example") r.mailboxes = {"local.example/bob"};
        if (list) r.mailboxes = {"local.example/carl", "local.example/bob"};
        if (postmaster) r.mailboxes = {"local.example/pm"};
        // bob and the postmaster's mailbox have quotas; carl has none
        for (const auto& m : r.mailboxes)
            if (m != "local.example/carl") r.quotas[m] = quota;
        return r;
    }
};

class Usage : public core::MailboxUsage {
public:
    std::map<std::string, std::optional<std::uint64_t>> used;
    mutable std::vector<std::string> asked;
    std::optional<std::uint64_t> usedBytes(const std::string& location) const override {
        asked.push_back(location);
        auto it = used.find(location);
        return it == used.end() ? std::optional<std::uint64_t>(0) : it->second;
    }
};

class Grants : public core::GrantStore {
public:
    core::Answer answer = core::Answer::Yes;
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress&, const core::Grant&) override { return true; }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress&, const std::string&, core::Grant* out) override {
        if (answer == core::Answer::Yes && out) {
            out->user = "ann@local.example";
            out->senders = {"ann@local.example", "sales@local.example"};
        }
        return answer;
    }
};

class Limiter : public core::OutboundLimiter {
public:
    core::LimitAnswer answer = core::LimitAnswer::Allow;
    int messages = 0, recipients = 0;
    const core::AuthIdentity* lastIdentity = nullptr;  // valid only for the caller's own identity
    std::string lastUser;                              // the user counted against ("" = none)
    core::LimitAnswer addMessage(const core::ClientAddress&, const core::AuthIdentity* id, std::string& what) override {
        ++messages;
        lastIdentity = id;
        lastUser = id ? id->user : "";
        if (answer != core::LimitAnswer::Allow) what = "user_messages_per_hour";
        return answer;
    }
    core::LimitAnswer addRecipients(const core::ClientAddress&, const core::AuthIdentity* id, std::uint32_t n,
                                    std::string& what) override {
        recipients += static_cast<int>(n);
        lastIdentity = id;
        lastUser = id ? id->user : "";
        if (answer != core::LimitAnswer::Allow) what = "ip_recipients_per_hour";
        return answer;
    }
};

smtp::ParsedPath path(const std::string& p, smtp::PathKind kind = smtp::PathKind::Forward) {
    smtp::ParsedPath r = smtp::parsePath(p, kind);
    BOOST_REQUIRE_MESSAGE(r.ok, p);
    return r;
}

core::ClientAddress client() {
    core::ClientAddress c;
    c.ip = Poco::Net::IPAddress("192.0.2.7");
    return c;
}

struct World {
    Directory dir;
    Grants grants;
    Limiter limiter;
    core::ClientAddress addr = client();
    core::AuthIdentity alice{"alice@local.example", {"alice@local.example"}, "", {}};

    RcptVerdict rcpt(const std::string& to, const std::string& from, bool authenticated, bool ownOnly = true) {
        smtp::ParsedPath sender = path(from, smtp::PathKind::Reverse);
        RecipientRequest req{RecipientContext{authenticated, addr, dir, &grants, "local.example"}, sender, ownOnly,
                             authenticated ? &alice : nullptr, &limiter};
        return TransactionPolicy::decideRecipient(path(to), req);
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(transaction_policy)

BOOST_AUTO_TEST_CASE(sender_rules_then_message_limit) {
    World w;
    // Submission without AUTH: refused by the sender rules, nothing counted.
    auto v = TransactionPolicy::decideSender(path("<x@remote.example>", smtp::PathKind::Reverse),
                                             SenderRequest{true, nullptr, w.addr, &w.limiter});
    BOOST_TEST(!v.accepted);
    BOOST_TEST(v.reason == "sender");
    BOOST_TEST(v.reply.code == 530);
    BOOST_TEST(w.limiter.messages == 0);
    // Authenticated, own address: counted once, accepted.
    v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{true, &w.alice, w.addr, &w.limiter});
    BOOST_TEST(v.accepted);
    BOOST_TEST(v.reply.format(true) == "250 2.1.0 Ok\r\n");
    BOOST_TEST(w.limiter.messages == 1);
    // Over the limit: 450 4.7.1 with the limit named; store down: 451.
    w.limiter.answer = core::LimitAnswer::Limited;
    v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{true, &w.alice, w.addr, &w.limiter});
    BOOST_TEST(!v.accepted);
    BOOST_TEST(v.reason == "rate_limit");
    BOOST_TEST(v.limit == "user_messages_per_hour");
    BOOST_TEST(v.reply.format(true) == "450 4.7.1 Message rate limit exceeded, try again later\r\n");
    w.limiter.answer = core::LimitAnswer::TempFail;
    v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{true, &w.alice, w.addr, &w.limiter});
    BOOST_TEST(v.reason == "rate_tempfail");
    BOOST_TEST(v.reply.code == 451);
    // MX without AUTH: anyone may send to us; nothing counted.
    w.limiter = Limiter{};
    v = TransactionPolicy::decideSender(path("<x@remote.example>", smtp::PathKind::Reverse),
                                        SenderRequest{false, nullptr, w.addr, &w.limiter});
    BOOST_TEST(v.accepted);
    BOOST_TEST(w.limiter.messages == 0);
}

BOOST_AUTO_TEST_CASE(local_recipients_are_not_counted) {
    World w;
    auto v = w.rcpt("<bob@local.example>", "<x@remote.example>", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(w.limiter.recipients == 0);
}

BOOST_AUTO_TEST_CASE(grant_belongs_to_its_user) {
    World w;
    auto v = w.rcpt("<carol@remote.example>", "<ann@local.example>", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(v.viaGrant);
    BOOST_TEST(w.limiter.recipients == 1);  // grant relaying counts against the client IP and the grant's user
    BOOST_TEST(w.limiter.lastUser == "ann@local.example");
    v = w.rcpt("<carol@remote.example>", "<SALES@local.example>", false);  // the user's other address
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    v = w.rcpt("<carol@remote.example>", "<mallory@local.example>", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Reject));
    BOOST_TEST(v.reason == "grant_sender_mismatch");
    BOOST_TEST(v.reply.code == 554);
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(w.limiter.recipients == 2);  // refused recipients are not counted
    v = w.rcpt("<carol@remote.example>", "<>", false);  // a bounce cannot ride on a grant either
    BOOST_TEST(v.reason == "grant_sender_mismatch");
    v = w.rcpt("<carol@remote.example>", "<mallory@local.example>", false, /*ownOnly=*/false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
}

BOOST_AUTO_TEST_CASE(recipient_limits_for_authenticated_and_granted_relays) {
    World w;
    w.limiter.answer = core::LimitAnswer::Limited;
    auto v = w.rcpt("<carol@remote.example>", "<alice@local.example>", true);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reason == "rate_limit");
    BOOST_TEST(v.limit == "ip_recipients_per_hour");
    BOOST_TEST(v.reply.format(true) == "452 4.7.1 Recipient rate limit exceeded, try again later\r\n");
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(w.limiter.lastIdentity == &w.alice);
    w.limiter.answer = core::LimitAnswer::TempFail;
    v = w.rcpt("<carol@remote.example>", "<ann@local.example>", false);
    BOOST_TEST(v.reason == "rate_tempfail");
    BOOST_TEST(v.reply.code == 451);
    // An unauthenticated relay without a grant is refused before any counting.
    w.grants.answer = core::Answer::No;
    w.limiter = Limiter{};
    v = w.rcpt("<carol@remote.example>", "<ann@local.example>", false);
    BOOST_TEST(v.reason == "relay_denied");
    BOOST_TEST(w.limiter.recipients == 0);
}

BOOST_AUTO_TEST_CASE(a_grant_relay_counts_its_message_once_against_the_client_ip) {
    World w;
    auto rcpt = [&](const std::string& to, bool counted) {
        smtp::ParsedPath sender = path("<ann@local.example>", smtp::PathKind::Reverse);
        RecipientRequest req{RecipientContext{false, w.addr, w.dir, &w.grants, "local.example"}, sender, true,
                             nullptr, &w.limiter};
        req.messageCounted = counted;
        return TransactionPolicy::decideRecipient(path(to), req);
    };
    auto v = rcpt("<carol@remote.example>", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(v.countedMessage);
    BOOST_TEST(w.limiter.messages == 1);
    BOOST_TEST(w.limiter.lastUser == "ann@local.example");  // and against the grant's user
    v = rcpt("<dave@remote.example>", true);  // the same transaction's second recipient
    BOOST_TEST(!v.countedMessage);
    BOOST_TEST(w.limiter.messages == 1);
    BOOST_TEST(w.limiter.recipients == 2);
    v = rcpt("<bob@local.example>", false);  // local mail is no relay: nothing counted
    BOOST_TEST(!v.countedMessage);
    BOOST_TEST(w.limiter.messages == 1);
    // Over the client IP's message limit: 450 4.7.1, the recipient not counted.
    w.limiter.answer = core::LimitAnswer::Limited;
    v = rcpt("<carol@remote.example>", false);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reason == "rate_limit");
    BOOST_TEST(v.reply.format(true) == "450 4.7.1 Message rate limit exceeded, try again later\r\n");
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(w.limiter.recipients == 2);
    w.limiter.answer = core::LimitAnswer::TempFail;
    v = rcpt("<carol@remote.example>", false);
    BOOST_TEST(v.reason == "rate_tempfail");
    BOOST_TEST(v.reply.code == 451);
    // An authenticated sender's message was counted at MAIL, never again at RCPT.
    w.limiter = Limiter{};
    v = w.rcpt("<carol@remote.example>", "<alice@local.example>", true);
    BOOST_TEST(!v.countedMessage);
    BOOST_TEST(w.limiter.messages == 0);
}

// A grant relays for its POP3 user: a user held as compromised relays nothing through a
// grant either (451 4.7.1, as MAIL after AUTH), before anything is counted.
BOOST_AUTO_TEST_CASE(a_held_users_grant_relays_nothing) {
    struct Held final : core::AccountHold {
        bool isHeld(std::string_view user) const override { return user == "ann@local.example"; }
    } held;
    World w;
    smtp::ParsedPath sender = path("<ann@local.example>", smtp::PathKind::Reverse);
    RecipientRequest req{RecipientContext{false, w.addr, w.dir, &w.grants, "local.example"}, sender, true, nullptr,
                         &w.limiter};
    req.hold = &held;
    auto v = TransactionPolicy::decideRecipient(path("<carol@remote.example>"), req);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reason == "account_held");
    BOOST_TEST(v.reply.format(true) == "451 4.7.1 Account held after unusual activity, contact your administrator\r\n");
    BOOST_TEST(v.forwards.empty());
    BOOST_TEST(w.limiter.messages == 0);
    BOOST_TEST(w.limiter.recipients == 0);
    // Local mail from the same client is no relay: not refused.
    v = TransactionPolicy::decideRecipient(path("<bob@local.example>"), req);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
}

BOOST_AUTO_TEST_CASE(held_account_gets_451_4_7_1_at_mail_before_any_limit_is_counted) {
    struct Held final : core::AccountHold {
        bool isHeld(std::string_view user) const override { return user == "alice@local.example"; }
    } held;
    World w;
    auto v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                             SenderRequest{true, &w.alice, w.addr, &w.limiter, &held});
    BOOST_TEST(!v.accepted);
    BOOST_TEST(v.reason == "account_held");
    BOOST_TEST(v.reply.format(true) ==
               "451 4.7.1 Account held after unusual activity, contact your administrator\r\n");
    BOOST_TEST(w.limiter.messages == 0);  // a held account's attempts are not counted
    // Another account, and unauthenticated MX mail, are not affected.
    core::AuthIdentity bob{"bob@local.example", {"bob@local.example"}, "", {}};
    v = TransactionPolicy::decideSender(path("<bob@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{true, &bob, w.addr, &w.limiter, &held});
    BOOST_TEST(v.accepted);
    v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{false, nullptr, w.addr, &w.limiter, &held});
    BOOST_TEST(v.accepted);
}

BOOST_AUTO_TEST_CASE(unknown_holds_get_451_4_3_0_for_submissions_only) {
    // The flagged set is not read yet (the database was down at start): try again later.
    struct Unknown final : core::AccountHold {
        bool isHeld(std::string_view) const override { return true; }
        bool holdsKnown() const override { return false; }
    } unknown;
    World w;
    auto v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                             SenderRequest{true, &w.alice, w.addr, &w.limiter, &unknown});
    BOOST_TEST(!v.accepted);
    BOOST_TEST(v.reply.format(true) == "451 4.3.0 Account status cannot be checked now, try again later\r\n");
    v = TransactionPolicy::decideSender(path("<alice@local.example>", smtp::PathKind::Reverse),
                                        SenderRequest{false, nullptr, w.addr, &w.limiter, &unknown});
    BOOST_TEST(v.accepted);  // MX mail from outside is not affected
}

BOOST_AUTO_TEST_CASE(quota_of_local_mailboxes) {
    World w;
    Usage usage;
    auto rcpt = [&](const std::string& to, std::uint64_t size = 0, bool temp = false) {
        smtp::ParsedPath sender = path("<x@remote.example>", smtp::PathKind::Reverse);
        RecipientRequest req{RecipientContext{false, w.addr, w.dir, &w.grants, "local.example"}, sender, true,
                             nullptr, &w.limiter};
        req.usage = &usage;
        req.declaredSize = size;
        req.quotaFullTempFail = temp;
        return TransactionPolicy::decideRecipient(path(to), req);
    };
    // Below the quota: accepted, whatever the size when none was declared.
    usage.used["local.example/bob"] = 999;
    auto v = rcpt("<bob@local.example>");
    BOOST_TEST((v.kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(v.mailboxes.size() == 1u);
    // A declared SIZE that would take it over: 552 5.2.2, "over_quota"; one that fits: accepted.
    v = rcpt("<bob@local.example>", 2);
    BOOST_TEST((v.kind == RcptVerdict::Kind::Reject));
    BOOST_TEST(v.reply.format(true) == "552 5.2.2 Message too big for the mailbox quota\r\n");
    BOOST_TEST(v.reason == "over_quota");
    BOOST_TEST(v.quotaMailbox == "local.example/bob");
    BOOST_TEST(v.mailboxes.empty());
    BOOST_TEST((rcpt("<bob@local.example>", 1).kind == RcptVerdict::Kind::Accept));
    // With quota_full_tempfail: 452 while it could fit once room is made; a message larger
    // than the whole quota never fits, so 552 even then.
    BOOST_TEST(rcpt("<bob@local.example>", 2, true).reply.format(true) ==
               "452 4.2.2 Message too big for the mailbox quota\r\n");
    BOOST_TEST(rcpt("<bob@local.example>", 1001, true).reply.format(true) ==
               "552 5.2.2 Message too big for the mailbox quota\r\n");
    // At the quota: full, 552 5.2.2 (452 4.2.2 with quota_full_tempfail).
    usage.used["local.example/bob"] = 1000;
    v = rcpt("<bob@local.example>");
    BOOST_TEST(v.reply.format(true) == "552 5.2.2 Mailbox full\r\n");
    BOOST_TEST(v.reason == "mailbox_full");
    v = rcpt("<bob@local.example>", 0, true);
    BOOST_TEST((v.kind == RcptVerdict::Kind::TempFail));
    BOOST_TEST(v.reply.format(true) == "452 4.2.2 Mailbox full\r\n");
    // Full, and a SIZE larger than the whole quota: it never fits, 552 even then.
    BOOST_TEST(rcpt("<bob@local.example>", 1001, true).reply.format(true) == "552 5.2.2 Mailbox full\r\n");
    // An alias with one full mailbox among its targets is refused (never a silent loss).
    v = rcpt("<team@local.example>");
    BOOST_TEST(v.reason == "mailbox_full");
    // A mailbox without a quota is never asked about.
    usage.asked.clear();
    usage.used["local.example/bob"] = 0;
    BOOST_TEST((rcpt("<team@local.example>").kind == RcptVerdict::Kind::Accept));
    BOOST_TEST(usage.asked == std::vector<std::string>{"local.example/bob"});
    // Usage that cannot be told refuses nothing.
    usage.used["local.example/bob"] = std::nullopt;
    BOOST_TEST((rcpt("<bob@local.example>", 5000).kind == RcptVerdict::Kind::Accept));
    // postmaster@ (RFC 5321 4.5.1) is never refused as full, nor is <Postmaster>.
    usage.used["local.example/pm"] = 5000;
    BOOST_TEST((rcpt("<postmaster@local.example>").kind == RcptVerdict::Kind::Accept));
    BOOST_TEST((rcpt("<Postmaster>").kind == RcptVerdict::Kind::Accept));
    // No usage port: quotas are not enforced.
    usage.used["local.example/bob"] = 5000;
    smtp::ParsedPath sender = path("<x@remote.example>", smtp::PathKind::Reverse);
    RecipientRequest req{RecipientContext{false, w.addr, w.dir, &w.grants, "local.example"}, sender, true, nullptr,
                         &w.limiter};
    BOOST_TEST((TransactionPolicy::decideRecipient(path("<bob@local.example>"), req).kind == RcptVerdict::Kind::Accept));
}

BOOST_AUTO_TEST_SUITE_END()
