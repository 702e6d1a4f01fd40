// RFC 8461 5: which policy is in force, with the TXT lookup, the fetch and the clock replaced:
// cache hits by id, refetch on a new id, a failed fetch keeps the unexpired cached policy,
// expiry, the state file across a restart.
#include "mtasts/MtaSts.h"

#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <map>
#include <unistd.h>

using namespace postern::mtasts;

namespace {

struct Fixture {
    std::string txt = "v=STSv1; id=one";
    TxtStatus txtStatus = TxtStatus::Found;
    std::string body = "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n";
    bool fetchOk = true;
    int fetches = 0;
    std::int64_t now = 1000;
    std::chrono::seconds refresh{0};  // delivery.mta_sts.refresh_interval (0: only at a new id)
    std::string dir;

    Fixture() {
        char tmpl[] = "/tmp/mtasts-unit-XXXXXX";
        dir = ::mkdtemp(tmpl);
    }
    ~Fixture() { std::filesystem::remove_all(dir); }

    std::unique_ptr<Engine> engine() {
        Settings s;
        s.fetch.timeout = std::chrono::seconds(1);
        s.fetch.maxSize = 65536;
        s.cacheFile = dir + "/cache";
        s.fetchRetry = std::chrono::seconds(300);
        s.refreshInterval = refresh;
        auto e = std::make_unique<Engine>(s, [](const std::string&, std::string& error) {
            error = "unused";
            return std::vector<Poco::Net::IPAddress>{};
        });
        e->setTxtLookup([this](const std::string& name) {
            BOOST_TEST(name == "_mta-sts.a.test");
            TxtAnswer a;
            a.status = txtStatus;
            if (txtStatus == TxtStatus::Found) a.records = {"v=spf1 -all", txt};
            return a;
        });
        e->setClock([this] { return now; });
        e->setFetcher([this](const std::string& domain) {
            BOOST_TEST(domain == "a.test");
            ++fetches;
            FetchResult r;
            r.ok = fetchOk;
            if (fetchOk) r.body = body;
            else r.error = "connection refused";
            return r;
        });
        return e;
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(mtasts_engine)

BOOST_FIXTURE_TEST_CASE(fetch_then_cache_by_id, Fixture) {
    auto e = engine();
    Lookup l = e->policyFor("a.test", "q1");
    BOOST_REQUIRE(l.policy);
    BOOST_TEST((l.policy->mode == Mode::Enforce));
    BOOST_TEST(std::string(l.source) == "fetch");
    BOOST_TEST(fetches == 1);
    l = e->policyFor("a.test", "q2");
    BOOST_TEST(std::string(l.source) == "cache");
    BOOST_TEST(fetches == 1);
    txt = "v=STSv1; id=two";  // a new id: fetched again
    body = "version: STSv1\nmode: testing\nmx: mx.a.test\nmax_age: 100\n";
    l = e->policyFor("a.test", "q3");
    BOOST_REQUIRE(l.policy);
    BOOST_TEST((l.policy->mode == Mode::Testing));
    BOOST_TEST(fetches == 2);
}

BOOST_FIXTURE_TEST_CASE(no_record_no_policy, Fixture) {
    txtStatus = TxtStatus::NotFound;
    auto e = engine();
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    txtStatus = TxtStatus::TempFail;
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    txtStatus = TxtStatus::Found;
    txt = "v=STSv1";  // invalid record
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 0);
}

BOOST_FIXTURE_TEST_CASE(failed_fetch_keeps_cached_until_expiry, Fixture) {
    auto e = engine();
    BOOST_REQUIRE(e->policyFor("a.test", "q").policy);
    txt = "v=STSv1; id=two";
    fetchOk = false;
    now += 50;
    Lookup l = e->policyFor("a.test", "q");
    BOOST_TEST(l.policy.has_value());  // the new id could not be fetched: the cached one stays
    BOOST_TEST(std::string(l.source) == "cache");
    txtStatus = TxtStatus::NotFound;   // nor does a missing record drop it
    BOOST_TEST(e->policyFor("a.test", "q").policy.has_value());
    now += 60;                         // past max_age (100 s after the fetch)
    BOOST_TEST(!e->policyFor("a.test", "q").policy.has_value());
}

// RFC 8461 10.2: a policy whose id does not change is fetched again after refresh_interval,
// ahead of its expiry; a failed refresh keeps the cached policy until it expires.
BOOST_FIXTURE_TEST_CASE(same_id_is_refreshed_ahead_of_expiry, Fixture) {
    refresh = std::chrono::seconds(30);
    auto e = engine();
    BOOST_REQUIRE(e->policyFor("a.test", "q").policy);  // fetched at 1000, max_age 100
    now += 20;
    BOOST_TEST(std::string(e->policyFor("a.test", "q").source) == "cache");
    BOOST_TEST(fetches == 1);
    now += 11;  // 1031: due
    Lookup l = e->policyFor("a.test", "q");
    BOOST_TEST(std::string(l.source) == "fetch");
    BOOST_TEST(fetches == 2);  // now cached until 1131
    now += 31;  // 1062: due again, and the policy server is blocked
    fetchOk = false;
    l = e->policyFor("a.test", "q");
    BOOST_REQUIRE(l.policy);  // the cached policy stands
    BOOST_TEST((l.policy->mode == Mode::Enforce));
    BOOST_TEST(fetches == 3);
    now += 80;  // 1142: past the refreshed policy's expiry
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
}

BOOST_FIXTURE_TEST_CASE(failed_fetch_not_retried_before_fetch_retry, Fixture) {
    fetchOk = false;
    auto e = engine();
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 1);  // within fetch_retry: not asked again
    txt = "v=STSv1; id=two";   // a new id is fetched at once
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 2);
    now += 301;
    fetchOk = true;
    BOOST_TEST(e->policyFor("a.test", "q").policy.has_value());
    BOOST_TEST(fetches == 3);
}

BOOST_FIXTURE_TEST_CASE(invalid_body_is_a_failed_fetch, Fixture) {
    body = "version: STSv1\nmode: enforce\nmax_age: 100\n";  // no mx
    auto e = engine();
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(e->cache().all().empty());
}

BOOST_FIXTURE_TEST_CASE(mode_none_is_no_policy_but_cached, Fixture) {
    body = "version: STSv1\nmode: none\nmax_age: 100\n";
    auto e = engine();
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 1);
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 1);  // cached: not fetched for every message
}

BOOST_FIXTURE_TEST_CASE(state_file_survives_restart, Fixture) {
    {
        auto e = engine();
        BOOST_REQUIRE(e->policyFor("a.test", "q").policy);
    }
    fetchOk = false;
    auto e = engine();  // a new process: reads the state file
    Lookup l = e->policyFor("a.test", "q");
    BOOST_REQUIRE(l.policy);
    BOOST_TEST(l.policy->mx.front() == "mx.a.test");
    BOOST_TEST(fetches == 1);
}

namespace {
struct FakeShared final : SharedPolicyStore {
    std::map<std::string, CachedPolicy> rows;
    int saves = 0;
    int loads = 0;
    std::optional<CachedPolicy> load(const std::string& d, bool* failed) override {
        if (failed) *failed = false;
        ++loads;
        auto it = rows.find(d);
        return it == rows.end() ? std::nullopt : std::optional<CachedPolicy>(it->second);
    }
    void save(const CachedPolicy& p) override {
        ++saves;
        rows[p.domain] = p;
    }
};
}  // namespace

BOOST_FIXTURE_TEST_CASE(shared_store_spares_the_fetch, Fixture) {
    FakeShared shared;
    {
        auto a = engine();  // node a fetches and saves to the shared store
        a->cache().setShared(&shared);
        BOOST_REQUIRE(a->policyFor("a.test", "q").policy);
        BOOST_TEST(shared.saves == 1);
    }
    std::filesystem::remove(dir + "/cache");  // node b: no state file of its own
    auto b = engine();
    b->cache().setShared(&shared);
    Lookup l = b->policyFor("a.test", "q");
    BOOST_REQUIRE(l.policy);
    BOOST_TEST(fetches == 1);
    BOOST_TEST(shared.saves == 1);  // adopted, not written back
    txt = "v=STSv1; id=two";        // a newer id than the shared row: fetched
    BOOST_REQUIRE(b->policyFor("a.test", "q").policy);
    BOOST_TEST(fetches == 2);
    BOOST_TEST(shared.rows["a.test"].id == "two");
}

BOOST_FIXTURE_TEST_CASE(a_domain_without_a_policy_is_not_a_query_per_delivery, Fixture) {
    // Review finding: every delivery to a domain the shared store did not have (most
    // domains have no MTA-STS) was a query on the cluster's pool.
    FakeShared shared;
    txtStatus = TxtStatus::NotFound;
    auto e = engine();
    e->cache().setShared(&shared);
    for (int i = 0; i < 5; ++i) BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(shared.loads == 1);
    now += PolicyCache::SharedMissTtl;  // then asked again: another node may have fetched one
    BOOST_TEST(!e->policyFor("a.test", "q").policy);
    BOOST_TEST(shared.loads == 2);
    BOOST_TEST(fetches == 0);
}

BOOST_FIXTURE_TEST_CASE(expired_policies_leave_the_state_file, Fixture) {
    auto e = engine();
    BOOST_REQUIRE(e->policyFor("a.test", "q").policy);  // max_age 100: expires at 1100
    e->cache().put(CachedPolicy{"b.test", "x", Policy{}, 1000, 5000});
    BOOST_TEST(e->cache().all().size() == 2u);
    now = 2000;
    e->cache().put(CachedPolicy{"c.test", "y", Policy{}, 2000, 6000});
    std::vector<std::string> left;
    for (const auto& c : PolicyCache(dir + "/cache", [this] { return now; }).all()) left.push_back(c.domain);
    BOOST_TEST(left == (std::vector<std::string>{"b.test", "c.test"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
