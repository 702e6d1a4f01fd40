// TLSA base domain of an alias MX host (RFC 7672 2.2.2, RFC 7671 7): the CNAME chain read from
// an address answer, and which name's TLSA records are used (expanded first, then original),
// with the SNI / DANE-TA reference identifiers that follow.
#include "delivery/DanePolicy.h"
#include "delivery/MxResolver.h"

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

using namespace postern::delivery;

namespace {

// --- DNS wire messages -------------------------------------------------------------------

void name(std::vector<std::uint8_t>& m, const std::string& n) {
    std::size_t pos = 0;
    while (pos < n.size()) {
        auto dot = n.find('.', pos);
        if (dot == std::string::npos) dot = n.size();
        m.push_back(static_cast<std::uint8_t>(dot - pos));
        m.insert(m.end(), n.begin() + static_cast<long>(pos), n.begin() + static_cast<long>(dot));
        pos = dot + 1;
    }
    m.push_back(0);
}

void u16(std::vector<std::uint8_t>& m, unsigned v) {
    m.push_back(static_cast<std::uint8_t>(v >> 8));
    m.push_back(static_cast<std::uint8_t>(v & 0xff));
}

struct Rr {
    std::string owner;
    unsigned type;         // 5 CNAME, 1 A
    std::string target;    // CNAME
};

// A response to `qname` IN A with the given answer records.
std::vector<std::uint8_t> response(const std::string& qname, const std::vector<Rr>& rrs) {
    std::vector<std::uint8_t> m = {0x12, 0x34, 0x81, 0xa0};  // id, QR RD RA AD
    u16(m, 1);
    u16(m, static_cast<unsigned>(rrs.size()));
    u16(m, 0);
    u16(m, 0);
    name(m, qname);
    u16(m, 1);
    u16(m, 1);
    for (const auto& rr : rrs) {
        name(m, rr.owner);
        u16(m, rr.type);
        u16(m, 1);
        m.insert(m.end(), {0, 0, 1, 44});  // TTL 300
        std::vector<std::uint8_t> rdata;
        if (rr.type == 5) name(rdata, rr.target);
        else rdata = {127, 0, 0, 20};
        u16(m, static_cast<unsigned>(rdata.size()));
        m.insert(m.end(), rdata.begin(), rdata.end());
    }
    return m;
}

std::string expand(const std::string& qname, const std::vector<Rr>& rrs) {
    auto m = response(qname, rrs);
    return cnameExpanded(m.data(), m.size(), qname);
}

// --- TLSA lookups per name ----------------------------------------------------------------

class FakeResolver : public MxResolver {
public:
    FakeResolver() : MxResolver(ResolverSettings{}) {}
    std::map<std::string, TlsaResult> byHost;  // missing: Ok, secure, no records
    std::vector<std::string> asked;
    TlsaResult resolveTlsa(const std::string& host, std::uint16_t) override {
        asked.push_back(host);
        auto it = byHost.find(host);
        if (it != byHost.end()) return it->second;
        TlsaResult none;
        none.status = LookupStatus::Ok;
        none.secure = true;
        return none;
    }
};

TlsaRecord usable(std::uint8_t b) { return {3, 1, 1, std::vector<std::uint8_t>(32, b)}; }

TlsaResult secureWith(TlsaRecord r) {
    TlsaResult t;
    t.status = LookupStatus::Ok;
    t.secure = true;
    t.records = {std::move(r)};
    return t;
}

struct Fixture {
    FakeResolver r;
    MxResult where;
    // mx.example.net CNAME real.example.org: secure addresses (the chain included).
    MxHost host{"mx.example.net", 10, {}, true, "real.example.org"};
    Fixture() {
        where.status = LookupStatus::Ok;
        where.mxSecure = true;
    }
    HostTls run(TlsPolicy p = TlsPolicy::Dane) { return hostTlsPolicy(r, p, where, host, 25); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(dane_cname)

BOOST_AUTO_TEST_CASE(cname_chain_is_followed_to_its_end) {
    BOOST_TEST(expand("mx.example.net", {{"mx.example.net", 1, ""}}) == "mx.example.net");
    BOOST_TEST(expand("mx.example.net", {{"mx.example.net", 5, "real.example.org"},
                                         {"real.example.org", 1, ""}}) == "real.example.org");
    // Two links, out of order and in mixed case; the result is lower-case without a dot.
    BOOST_TEST(expand("MX.Example.NET.", {{"b.example.org", 5, "C.Example.ORG"},
                                          {"mx.example.net", 5, "b.example.org"},
                                          {"c.example.org", 1, ""}}) == "c.example.org");
    // A CNAME of some other name is not part of the chain.
    BOOST_TEST(expand("mx.example.net", {{"other.example.net", 5, "x.example.org"},
                                         {"mx.example.net", 1, ""}}) == "mx.example.net");
}

BOOST_AUTO_TEST_CASE(looping_or_malformed_answers_give_no_name) {
    BOOST_TEST(expand("a.example", {{"a.example", 5, "b.example"}, {"b.example", 5, "a.example"}}).empty());
    BOOST_TEST(expand("a.example", {{"a.example", 5, "a.example"}}).empty());
    auto m = response("a.example", {{"a.example", 5, "b.example"}});
    for (std::size_t cut = 0; cut + 1 < m.size(); ++cut)
        BOOST_TEST(cnameExpanded(m.data(), cut, "a.example").empty(), "cut at " << cut);
}

BOOST_AUTO_TEST_CASE(tlsa_at_the_expanded_name_comes_first) {
    Fixture f;
    f.r.byHost["real.example.org"] = secureWith(usable(1));
    f.r.byHost["mx.example.net"] = secureWith(usable(2));
    HostTls t = f.run();
    BOOST_TEST((t.policy == TlsPolicy::Dane));
    BOOST_REQUIRE(t.dane);
    BOOST_TEST((t.dane->tlsa == std::vector<TlsaRecord>{usable(1)}));
    // SNI = the TLSA base domain (expanded), the original name accepted too.
    BOOST_TEST((t.dane->names == std::vector<std::string>{"real.example.org", "mx.example.net"}));
    BOOST_TEST((f.r.asked == std::vector<std::string>{"real.example.org"}));
}

BOOST_AUTO_TEST_CASE(without_tlsa_at_the_expanded_name_the_original_name) {
    Fixture f;
    f.r.byHost["mx.example.net"] = secureWith(usable(2));
    HostTls t = f.run();
    BOOST_TEST((t.policy == TlsPolicy::Dane));
    BOOST_REQUIRE(t.dane);
    BOOST_TEST((t.dane->tlsa == std::vector<TlsaRecord>{usable(2)}));
    BOOST_TEST((t.dane->names == std::vector<std::string>{"mx.example.net", "real.example.org"}));
    BOOST_TEST((f.r.asked == std::vector<std::string>{"real.example.org", "mx.example.net"}));
}

BOOST_AUTO_TEST_CASE(insecure_tlsa_at_the_expanded_name_is_not_used) {
    Fixture f;
    TlsaResult insecure = secureWith(usable(1));
    insecure.secure = false;
    f.r.byHost["real.example.org"] = insecure;
    HostTls t = f.run();  // nothing at the original name either
    BOOST_TEST((t.policy == TlsPolicy::May));
    BOOST_TEST(!t.dane);
    BOOST_TEST((f.r.asked == std::vector<std::string>{"real.example.org", "mx.example.net"}));
    f.r.byHost["mx.example.net"] = secureWith(usable(2));
    f.r.asked.clear();
    t = f.run();
    BOOST_REQUIRE(t.dane);
    BOOST_TEST((t.dane->tlsa == std::vector<TlsaRecord>{usable(2)}));
}

BOOST_AUTO_TEST_CASE(failed_lookup_at_the_expanded_name_is_not_skipped) {
    Fixture f;
    f.r.byHost["real.example.org"] = TlsaResult{};  // TempFail
    f.r.byHost["mx.example.net"] = secureWith(usable(2));
    HostTls t = f.run();
    BOOST_TEST(!t.usable);
    BOOST_TEST(t.failure == "tlsa_lookup_failed");
    BOOST_TEST((f.r.asked == std::vector<std::string>{"real.example.org"}));
}

BOOST_AUTO_TEST_CASE(insecure_cname_chain_means_no_dane) {
    Fixture f;
    f.host.secure = false;  // some answer of the chain was not authenticated
    f.r.byHost["real.example.org"] = secureWith(usable(1));
    HostTls t = f.run(TlsPolicy::Dane);
    BOOST_TEST((t.policy == TlsPolicy::May));
    BOOST_TEST(!daneGoverns(t));
    t = f.run(TlsPolicy::DaneOnly);
    BOOST_TEST(!t.usable);
    BOOST_TEST(t.failure == "insecure_dns");
    BOOST_TEST(f.r.asked.empty());
}

BOOST_AUTO_TEST_CASE(not_an_alias_is_looked_up_once) {
    for (std::string expanded : {"", "mx.example.net"}) {
        Fixture f;
        f.host.expanded = expanded;
        f.r.byHost["mx.example.net"] = secureWith(usable(2));
        HostTls t = f.run();
        BOOST_REQUIRE(t.dane);
        BOOST_TEST((t.dane->names == std::vector<std::string>{"mx.example.net"}));
        BOOST_TEST((f.r.asked == std::vector<std::string>{"mx.example.net"}));
    }
}

BOOST_AUTO_TEST_SUITE_END()
