#include "delivery/MxResolver.h"

#include <boost/test/unit_test.hpp>

#include <map>
#include <set>

using namespace postern::delivery;

BOOST_AUTO_TEST_SUITE(mx_resolver)

BOOST_AUTO_TEST_CASE(lowest_preference_first) {
    std::mt19937 rng(1);
    auto out = orderMxRecords({{30, "c"}, {10, "a"}, {20, "b"}}, rng);
    BOOST_TEST_REQUIRE(out.size() == 3u);
    BOOST_TEST(out[0].host == "a");
    BOOST_TEST(out[1].host == "b");
    BOOST_TEST(out[2].host == "c");
}

BOOST_AUTO_TEST_CASE(equal_preferences_are_shuffled_but_stay_in_their_rank) {
    std::map<std::string, int> firsts;
    for (unsigned seed = 0; seed < 200; ++seed) {
        std::mt19937 rng(seed);
        auto out = orderMxRecords({{10, "x"}, {5, "p"}, {10, "y"}, {5, "q"}, {10, "z"}}, rng);
        BOOST_TEST_REQUIRE(out.size() == 5u);
        std::set<std::string> head{out[0].host, out[1].host};
        BOOST_TEST((head == std::set<std::string>{"p", "q"}));
        for (std::size_t i = 2; i < 5; ++i) BOOST_TEST(out[i].preference == 10);
        ++firsts[out[2].host];
    }
    // Each of x, y, z leads its rank sometimes (load spreading, RFC 5321 5.1).
    BOOST_TEST(firsts.size() == 3u);
    for (const auto& [h, n] : firsts) BOOST_TEST(n > 20, h << " first " << n << " times");
}

BOOST_AUTO_TEST_CASE(null_mx_is_only_a_single_root_record) {
    BOOST_TEST(isNullMx({{0, ""}}));
    BOOST_TEST(!isNullMx({}));
    BOOST_TEST(!isNullMx({{10, "mx.example"}}));
    BOOST_TEST(!isNullMx({{0, ""}, {10, "mx.example"}}));
}

BOOST_AUTO_TEST_CASE(address_literals_and_ip_hosts_need_no_dns) {
    MxResolver r({"127.0.0.1:1", std::chrono::milliseconds(1000)});  // nothing listens there
    auto a = r.resolveMx("[192.0.2.1]");
    BOOST_TEST_REQUIRE((a.status == LookupStatus::Ok));
    BOOST_TEST(a.hosts.at(0).addresses.at(0).toString() == "192.0.2.1");
    auto b = r.resolveMx("[IPv6:2001:db8::1]");
    BOOST_TEST_REQUIRE((b.status == LookupStatus::Ok));
    BOOST_TEST(b.hosts.at(0).addresses.at(0).toString() == "2001:db8::1");
    auto c = r.resolveHost("192.0.2.9");
    BOOST_TEST_REQUIRE((c.status == LookupStatus::Ok));
    BOOST_TEST(c.hosts.at(0).addresses.at(0).toString() == "192.0.2.9");
}

BOOST_AUTO_TEST_CASE(unreachable_resolver_is_a_temporary_failure) {
    MxResolver r({"127.0.0.1:1", std::chrono::milliseconds(1000)});
    auto m = r.resolveMx("example.test");
    BOOST_TEST((m.status == LookupStatus::TempFail));
    BOOST_TEST(m.enhanced == "4.4.3");
}

BOOST_AUTO_TEST_SUITE_END()
