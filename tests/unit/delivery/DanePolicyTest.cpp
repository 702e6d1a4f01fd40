// The TLS policy in force per MX host under dane / dane-only (RFC 7672 2.2), with a resolver
// whose TLSA answers the test sets.
#include "delivery/DanePolicy.h"

#include <boost/test/unit_test.hpp>

using namespace postern::delivery;

namespace {

class FakeResolver : public MxResolver {
public:
    FakeResolver() : MxResolver(ResolverSettings{}) {}
    TlsaResult tlsa;
    int lookups = 0;
    std::string askedHost;
    std::uint16_t askedPort = 0;
    TlsaResult resolveTlsa(const std::string& host, std::uint16_t port) override {
        ++lookups;
        askedHost = host;
        askedPort = port;
        return tlsa;
    }
};

TlsaRecord usable() { return {3, 1, 1, std::vector<std::uint8_t>(32, 7)}; }
TlsaRecord pkix() { return {1, 1, 1, std::vector<std::uint8_t>(32, 7)}; }

struct Fixture {
    FakeResolver r;
    MxResult where;
    MxHost host{"mx1.example.net", 10, {}, true};
    Fixture() {
        where.status = LookupStatus::Ok;
        where.mxSecure = true;
        r.tlsa.status = LookupStatus::Ok;
        r.tlsa.secure = true;
    }
    HostTls run(TlsPolicy p) { return hostTlsPolicy(r, p, where, host, 2525); }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(dane_policy)

BOOST_AUTO_TEST_CASE(other_policies_need_no_lookup) {
    Fixture f;
    for (TlsPolicy p : {TlsPolicy::None, TlsPolicy::May, TlsPolicy::Encrypt, TlsPolicy::Verify}) {
        HostTls t = f.run(p);
        BOOST_TEST((t.policy == p));
        BOOST_TEST(t.usable);
        BOOST_TEST(t.label == tlsPolicyName(p));
    }
    BOOST_TEST(f.r.lookups == 0);
}

BOOST_AUTO_TEST_CASE(secure_usable_tlsa_is_dane) {
    Fixture f;
    f.r.tlsa.records = {pkix(), usable()};
    for (TlsPolicy p : {TlsPolicy::Dane, TlsPolicy::DaneOnly}) {
        HostTls t = f.run(p);
        BOOST_TEST((t.policy == TlsPolicy::Dane));
        BOOST_TEST(t.label == "dane");
        BOOST_REQUIRE(t.dane);
        BOOST_TEST(t.dane->tlsa.size() == 1u);  // only the usable record
        BOOST_TEST((t.dane->tlsa[0] == usable()));
        BOOST_TEST(t.dane->names == std::vector<std::string>{"mx1.example.net"});
        BOOST_TEST(daneGoverns(t));
    }
    BOOST_TEST(f.r.askedHost == "mx1.example.net");
    BOOST_TEST(f.r.askedPort == 2525);
}

BOOST_AUTO_TEST_CASE(insecure_dns_falls_back_or_defers) {
    for (int which = 0; which < 3; ++which) {
        Fixture f;
        f.r.tlsa.records = {usable()};
        if (which == 0) f.where.mxSecure = false;
        if (which == 1) f.host.secure = false;
        if (which == 2) f.r.tlsa.secure = false;  // TLSA in an insecure zone: ignored
        HostTls t = f.run(TlsPolicy::Dane);
        BOOST_TEST((t.policy == TlsPolicy::May));
        BOOST_TEST(t.label == "may");
        BOOST_TEST(!t.dane);
        BOOST_TEST(!daneGoverns(t));
        HostTls only = f.run(TlsPolicy::DaneOnly);
        BOOST_TEST(!only.usable);
        BOOST_TEST(only.failure == (which == 2 ? "no_tlsa" : "insecure_dns"));
    }
}

BOOST_AUTO_TEST_CASE(no_tlsa) {
    Fixture f;
    HostTls t = f.run(TlsPolicy::Dane);
    BOOST_TEST((t.policy == TlsPolicy::May));
    BOOST_TEST(t.usable);
    HostTls only = f.run(TlsPolicy::DaneOnly);
    BOOST_TEST(!only.usable);
    BOOST_TEST(only.failure == "no_tlsa");
    BOOST_TEST(only.label == "dane");
}

BOOST_AUTO_TEST_CASE(all_unusable_means_encryption_without_authentication) {
    Fixture f;
    f.r.tlsa.records = {pkix(), TlsaRecord{255, 255, 255, {}}};
    HostTls t = f.run(TlsPolicy::Dane);
    BOOST_TEST((t.policy == TlsPolicy::Encrypt));
    BOOST_TEST(t.label == "encrypt");
    BOOST_TEST(t.usable);
    BOOST_TEST(daneGoverns(t));  // MTA-STS does not apply either
    HostTls only = f.run(TlsPolicy::DaneOnly);
    BOOST_TEST(!only.usable);
    BOOST_TEST(only.failure == "tlsa_unusable");
}

BOOST_AUTO_TEST_CASE(failed_lookup_makes_the_host_unusable) {
    Fixture f;
    f.r.tlsa.status = LookupStatus::TempFail;
    for (TlsPolicy p : {TlsPolicy::Dane, TlsPolicy::DaneOnly}) {
        HostTls t = f.run(p);
        BOOST_TEST(!t.usable);
        BOOST_TEST(t.failure == "tlsa_lookup_failed");
        BOOST_TEST(daneGoverns(t));
    }
}

BOOST_AUTO_TEST_SUITE_END()
