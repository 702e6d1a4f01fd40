// The signing decision and the sink decorator: who gets signed, with which keys, and that
// the signatures are written in front of the stored message before the inner commit.
#include "dkim/Signer.h"
#include "dkim/SigningSink.h"

#include <boost/test/unit_test.hpp>

using namespace postern;
using namespace postern::dkim;

namespace {

KeyMap twoKeyMap() {
    KeyMap m;
    m["example.com"].push_back(parsePrivateKey(privateKeyPem(generateKey(Algorithm::Rsa)), "example.com", "r1"));
    m["example.com"].push_back(parsePrivateKey(privateKeyPem(generateKey(Algorithm::Ed25519)), "example.com", "e1"));
    return m;
}

const std::vector<std::string> Alice{"alice@example.com"};

const std::string Msg = "Received: from x\r\nFrom: Alice <alice@EXAMPLE.com>\r\nSubject: s\r\n\r\nhello\r\n";

struct MemoryWriter : core::MessageWriter {
    std::string* out;
    bool* committed;
    bool write(const char* d, std::size_t n) override {
        out->append(d, n);
        return true;
    }
    core::SinkResult commit() override {
        *committed = true;
        return {core::SinkStatus::Ok, "id"};
    }
};

struct MemorySink : core::MessageSink {
    std::string stored;
    bool committed = false;
    core::MessageWriterPtr open(const core::Envelope&, core::SinkStatus& st) override {
        st = core::SinkStatus::Ok;
        auto w = std::make_unique<MemoryWriter>();
        w->out = &stored;
        w->committed = &committed;
        return w;
    }
};

struct Counted : core::EventCounters {
    std::vector<std::string> labels;
    void count(std::string_view e, std::string_view l) override { labels.push_back(std::string(e) + "/" + std::string(l)); }
    void observe(std::string_view, double) override {}
};

}  // namespace

BOOST_AUTO_TEST_SUITE(dkim_signing_sink)

BOOST_AUTO_TEST_CASE(authorised_with_keys_gets_both_signatures) {
    KeyStore ks;
    ks.replace(twoKeyMap());
    SignOutcome o = signIfWanted(Msg, true, Alice, ks, 1700000000);
    BOOST_TEST(o.skipReason == "");
    BOOST_TEST(o.domain == "example.com");
    BOOST_TEST(o.used.size() == 2u);
    BOOST_TEST(o.prefix.find("a=rsa-sha256") != std::string::npos);
    BOOST_TEST(o.prefix.find("a=ed25519-sha256") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(skip_reasons) {
    KeyStore ks;
    ks.replace(twoKeyMap());
    const std::vector<std::string> a{"a@example.com"};
    BOOST_TEST(signIfWanted(Msg, false, Alice, ks, 0).skipReason == "not_authenticated");
    BOOST_TEST(signIfWanted("From: a@other.example\r\n\r\nx\r\n", true, {"a@other.example"}, ks, 0).skipReason == "no_key");
    BOOST_TEST(signIfWanted("Subject: x\r\n\r\nx\r\n", true, a, ks, 0).skipReason == "no_from");
    BOOST_TEST(signIfWanted("From: a@example.com, b@example.com\r\n\r\nx\r\n", true, a, ks, 0).skipReason == "multiple_from");
    BOOST_TEST(signIfWanted("From: a@example.com\r\n\r\nbare\nlf\r\n", true, a, ks, 0).skipReason == "bare_line_ending");
    // A hosted domain's key signs only its owners' mail: the From address must be one the
    // user owns (login or sender addresses), not just any address of a domain with keys.
    for (const auto& owns : std::vector<std::vector<std::string>>{
             {}, {"mallory@other.example"}, {"bob@example.com"}, {"alice@sub.example.com"}, {"example.com"}}) {
        SignOutcome o = signIfWanted(Msg, true, owns, ks, 0);
        BOOST_TEST(o.skipReason == "from_not_own", owns.size());
        BOOST_TEST(o.prefix.empty());
    }
    BOOST_TEST(signIfWanted(Msg, true, {"x@y.test", "alice@example.com"}, ks, 0).skipReason == "");  // Alice@EXAMPLE.com
    // A quoted local part is never taken for an owned address.
    BOOST_TEST(signIfWanted("From: \"alice\"@example.com\r\n\r\nx\r\n", true, Alice, ks, 0).skipReason == "from_not_own");
    BOOST_TEST(signIfWanted("From: \"Alice A.\" <alice@example.com>\r\n\r\nx\r\n", true, Alice, ks, 0).skipReason == "");
    BOOST_TEST(signIfWanted("From: alice (a comment) @example.com\r\n\r\nx\r\n", true, Alice, ks, 0).skipReason == "");
}

BOOST_AUTO_TEST_CASE(sink_prepends_signatures_before_commit) {
    KeyStore ks;
    ks.replace(twoKeyMap());
    MemorySink inner;
    Counted counters;
    SigningSink sink(inner, ks, counters, [] { return std::time_t(1700000000); });
    core::Envelope env;
    env.authUser = "alice@example.com";
    env.senderOwns = Alice;
    core::SinkStatus st;
    auto w = sink.open(env, st);
    BOOST_REQUIRE(w);
    BOOST_TEST(w->write(Msg.data(), 10));
    BOOST_TEST(w->write(Msg.data() + 10, Msg.size() - 10));
    BOOST_TEST(inner.stored.empty());  // held until the end of data
    BOOST_TEST((w->commit().status == core::SinkStatus::Ok));
    BOOST_TEST(inner.committed);
    BOOST_TEST(inner.stored.rfind("DKIM-Signature: v=1; a=rsa-sha256;", 0) == 0);
    BOOST_TEST(inner.stored.size() > Msg.size());
    BOOST_TEST(inner.stored.substr(inner.stored.size() - Msg.size()) == Msg);
    BOOST_TEST(counters.labels == std::vector<std::string>{"dkim/signed"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(sink_streams_unauthenticated_mail_untouched) {
    KeyStore ks;
    ks.replace(twoKeyMap());
    MemorySink inner;
    Counted counters;
    SigningSink sink(inner, ks, counters);
    core::Envelope env;  // MX mail: nobody authenticated, no grant
    core::SinkStatus st;
    auto w = sink.open(env, st);
    BOOST_TEST(w->write(Msg.data(), Msg.size()));
    BOOST_TEST(inner.stored == Msg);  // passed straight through
    BOOST_TEST((w->commit().status == core::SinkStatus::Ok));
    BOOST_TEST(inner.stored == Msg);
    BOOST_TEST(counters.labels == std::vector<std::string>{"dkim/not_authenticated"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(grant_holder_is_signed) {
    KeyStore ks;
    ks.replace(twoKeyMap());
    MemorySink inner;
    Counted counters;
    SigningSink sink(inner, ks, counters);
    core::Envelope env;
    env.viaGrant = true;
    env.senderOwns = Alice;
    core::SinkStatus st;
    auto w = sink.open(env, st);
    w->write(Msg.data(), Msg.size());
    w->commit();
    BOOST_TEST(inner.stored.find("a=ed25519-sha256") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(mail_that_will_not_be_signed_streams_from_the_end_of_its_header) {
    // Review finding: every authenticated message was held whole in memory, signed or not.
    KeyStore ks;
    ks.replace(twoKeyMap());
    for (const char* sender : {"alice@other.example", "alice@example.com"}) {  // from_not_own; signed
        MemorySink inner;
        Counted counters;
        SigningSink sink(inner, ks, counters, [] { return std::time_t(1700000000); });
        core::Envelope env;
        env.authUser = "alice@example.com";
        env.senderOwns = {sender};
        core::SinkStatus st;
        auto w = sink.open(env, st);
        const std::string head = "Received: from x\r\nFrom: <alice@example.com>\r";
        const std::string rest = "\n\r\nbody\r\n\r\nmore\r\n";  // the empty line straddles two writes
        BOOST_TEST(w->write(head.data(), head.size()));
        BOOST_TEST(inner.stored.empty());  // the header has not ended yet
        BOOST_TEST(w->write(rest.data(), rest.size()));
        const bool signing = std::string(sender) == "alice@example.com";
        BOOST_TEST(inner.stored == (signing ? "" : head + rest), sender);
        BOOST_TEST((w->commit().status == core::SinkStatus::Ok));
        BOOST_TEST(inner.stored.substr(inner.stored.size() - head.size() - rest.size()) == head + rest);
        BOOST_TEST((inner.stored.rfind("DKIM-Signature:", 0) == 0) == signing, sender);
        BOOST_TEST(counters.labels ==
                       std::vector<std::string>{signing ? "dkim/signed" : "dkim/from_not_own"},
                   boost::test_tools::per_element());
    }
}

BOOST_AUTO_TEST_SUITE_END()
