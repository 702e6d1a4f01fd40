// MTA-STS policy file (RFC 8461 3.2), TXT record (3.1), MX pattern matching (4.1), the cache
// line and state file forms, and the HTTP response checks of the fetcher.
#include "mtasts/Fetcher.h"
#include "mtasts/Policy.h"
#include "mtasts/PolicyCache.h"

#include <boost/test/unit_test.hpp>

using namespace postern::mtasts;

namespace {
const std::string Rfc8461Example =
    "version: STSv1\n"
    "mode: enforce\n"
    "mx: mail.example.com\n"
    "mx: *.example.net\n"
    "mx: backupmx.example.com\n"
    "max_age: 604800\n";
}

BOOST_AUTO_TEST_SUITE(mtasts_policy)

BOOST_AUTO_TEST_CASE(rfc_example_lf) {
    auto p = parsePolicy(Rfc8461Example);
    BOOST_REQUIRE(p);
    BOOST_TEST((p->mode == Mode::Enforce));
    BOOST_TEST(p->maxAge == 604800u);
    BOOST_TEST(p->mx == (std::vector<std::string>{"mail.example.com", "*.example.net", "backupmx.example.com"}),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(crlf_and_whitespace_and_unknown_keys) {
    auto p = parsePolicy("version: STSv1\r\nmode:testing \r\nmx:   MX.Example.ORG.\r\nfoo: bar\r\n"
                         "x-extension: something: with colon\r\nmax_age:\t86400\r\n");
    BOOST_REQUIRE(p);
    BOOST_TEST((p->mode == Mode::Testing));
    BOOST_TEST(p->maxAge == 86400u);
    BOOST_REQUIRE_EQUAL(p->mx.size(), 1u);
    BOOST_TEST(p->mx[0] == "mx.example.org");
}

BOOST_AUTO_TEST_CASE(mode_none_needs_no_mx) {
    auto p = parsePolicy("version: STSv1\nmode: none\nmax_age: 0\n");
    BOOST_REQUIRE(p);
    BOOST_TEST((p->mode == Mode::None));
    BOOST_TEST(p->maxAge == 0u);
}

BOOST_AUTO_TEST_CASE(max_age_bounds) {
    auto with = [](const std::string& age) {
        return parsePolicy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: " + age + "\n");
    };
    BOOST_TEST(with("31557600").has_value());
    BOOST_TEST(with("31557600")->maxAge == 31557600u);
    BOOST_TEST(!with("31557600")->maxAgeCapped);
    // Above the RFC 8461 3.2 maximum: capped to it, not rejected.
    BOOST_TEST(with("31557601").has_value());
    BOOST_TEST(with("31557601")->maxAge == 31557600u);
    BOOST_TEST(with("31557601")->maxAgeCapped);
    BOOST_TEST(with("9999999999")->maxAge == 31557600u);  // 10 digits, above 2^32 too
    BOOST_TEST(with("9999999999")->maxAgeCapped);
    BOOST_TEST(with("4294967296")->maxAge == 31557600u);  // 2^32: no wrap-around
    BOOST_TEST(!with("99999999999").has_value());  // 11 digits
    BOOST_TEST(!with("-1").has_value());
    BOOST_TEST(!with("1d").has_value());
    BOOST_TEST(!with("").has_value());
    BOOST_TEST(with("0000000001").has_value());    // 10 digits
}

BOOST_AUTO_TEST_CASE(invalid_means_no_policy) {
    std::string error;
    BOOST_TEST(!parsePolicy("", &error));
    BOOST_TEST(error == "no version");
    BOOST_TEST(!parsePolicy("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", &error));
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforcing\nmx: a.b\nmax_age: 1\n", &error));
    BOOST_TEST(error == "unknown mode");
    BOOST_TEST(!parsePolicy("version: STSv1\nmx: a.b\nmax_age: 1\n", &error));
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmx: a.b\n", &error));
    BOOST_TEST(error == "no max_age");
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmax_age: 1\n", &error));
    BOOST_TEST(error == "no mx");
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmx: bad host\nmax_age: 1\n", &error));
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n", &error));
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", &error));
    BOOST_TEST(!parsePolicy("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\ngarbage line\n", &error));
    BOOST_TEST(!parsePolicy("<html>not a policy</html>", &error));
}

BOOST_AUTO_TEST_CASE(first_occurrence_counts) {
    auto p = parsePolicy("version: STSv1\nmode: testing\nmode: enforce\nmx: a.b\nmax_age: 5\nmax_age: 7\n");
    BOOST_REQUIRE(p);
    BOOST_TEST((p->mode == Mode::Testing));
    BOOST_TEST(p->maxAge == 5u);
}

BOOST_AUTO_TEST_CASE(mx_matching) {
    BOOST_TEST(mxMatches("mail.example.com", "mail.example.com"));
    BOOST_TEST(mxMatches("mail.example.com", "MAIL.Example.com."));
    BOOST_TEST(!mxMatches("mail.example.com", "mail2.example.com"));
    BOOST_TEST(mxMatches("*.example.net", "mx1.example.net"));
    BOOST_TEST(mxMatches("*.example.net", "MX1.EXAMPLE.NET."));
    BOOST_TEST(!mxMatches("*.example.net", "example.net"));        // the wildcard needs one label
    BOOST_TEST(!mxMatches("*.example.net", "a.b.example.net"));    // and only one
    BOOST_TEST(!mxMatches("*.example.net", "mx1.example.net.evil"));
    BOOST_TEST(!mxMatches("*.example.net", "xexample.net"));
    auto p = parsePolicy(Rfc8461Example);
    BOOST_REQUIRE(p);
    BOOST_TEST(mxAllowed(*p, "backupmx.example.com"));
    BOOST_TEST(mxAllowed(*p, "x.example.net"));
    BOOST_TEST(!mxAllowed(*p, "evil.example.org"));
}

BOOST_AUTO_TEST_CASE(txt_record) {
    TxtRecord r = parseTxtRecord("v=STSv1; id=20160831085700Z;");
    BOOST_TEST((r.kind == TxtKind::Ok));
    BOOST_TEST(r.id == "20160831085700Z");
    r = parseTxtRecord("v = STSv1 ; id = abc ; ext.x-1=whatever ;");
    BOOST_TEST((r.kind == TxtKind::Ok));
    BOOST_TEST(r.id == "abc");
    BOOST_TEST((parseTxtRecord("v=STSv1;id=x").kind == TxtKind::Ok));
    BOOST_TEST((parseTxtRecord("v=spf1 -all").kind == TxtKind::NotSts));
    BOOST_TEST((parseTxtRecord("").kind == TxtKind::NotSts));
    BOOST_TEST((parseTxtRecord("id=1; v=STSv1").kind == TxtKind::NotSts));  // v must come first
    BOOST_TEST((parseTxtRecord("v=STSv1").kind == TxtKind::Invalid));        // no id
    BOOST_TEST((parseTxtRecord("v=STSv1;").kind == TxtKind::Invalid));
    BOOST_TEST((parseTxtRecord("v=STSv1; id=").kind == TxtKind::Invalid));
    BOOST_TEST((parseTxtRecord("v=STSv1; id=a-b").kind == TxtKind::Invalid));  // letters and digits only
    BOOST_TEST((parseTxtRecord("v=STSv1; id=" + std::string(33, 'a')).kind == TxtKind::Invalid));
    BOOST_TEST((parseTxtRecord("v=STSv1; id=" + std::string(32, 'a')).kind == TxtKind::Ok));
    BOOST_TEST((parseTxtRecord("v=STSv1; id=1; id=2").kind == TxtKind::Invalid));
    BOOST_TEST((parseTxtRecord("v=STSv1 id=1").kind == TxtKind::Invalid));
    BOOST_TEST((parseTxtRecord("v=STSv1; id=1; x=a b").kind == TxtKind::Invalid));
}

BOOST_AUTO_TEST_CASE(txt_record_set) {
    BOOST_TEST(stsIdFromRecords({"v=spf1 -all", "v=STSv1; id=abc"}).value_or("") == "abc");
    BOOST_TEST(!stsIdFromRecords({}).has_value());
    BOOST_TEST(!stsIdFromRecords({"v=spf1 -all"}).has_value());
    BOOST_TEST(!stsIdFromRecords({"v=STSv1; id=a", "v=STSv1; id=b"}).has_value());  // not exactly one
    BOOST_TEST(!stsIdFromRecords({"v=STSv1; id=a", "v=STSv1 broken"}).has_value());
    BOOST_TEST(!stsIdFromRecords({"v=STSv1; id=a-"}).has_value());
}

BOOST_AUTO_TEST_CASE(policy_line_round_trip) {
    auto p = parsePolicy(Rfc8461Example);
    BOOST_REQUIRE(p);
    BOOST_TEST(policyLine(*p) == "enforce 604800 mail.example.com,*.example.net,backupmx.example.com");
    auto back = parsePolicyLine(policyLine(*p));
    BOOST_REQUIRE(back);
    BOOST_TEST((*back == *p));
    auto none = parsePolicy("version: STSv1\nmode: none\nmax_age: 10\n");
    BOOST_REQUIRE(none);
    BOOST_TEST(policyLine(*none) == "none 10 -");
    BOOST_TEST((parsePolicyLine(policyLine(*none)) == none));
    BOOST_TEST(!parsePolicyLine("enforce"));
    BOOST_TEST(!parsePolicyLine("enforce 99999999999 a.b"));
}

BOOST_AUTO_TEST_CASE(cache_file_round_trip) {
    CachedPolicy a{"example.com", "id1", *parsePolicy(Rfc8461Example), 1000, 605800};
    CachedPolicy b{"example.org", "x2", *parsePolicy("version: STSv1\nmode: none\nmax_age: 60\n"), 5, 65};
    std::string text = formatCacheFile({a, b}) + "garbage line\nexample.net id 1 2 enforce 5\n";
    auto back = parseCacheFile(text);
    BOOST_REQUIRE_EQUAL(back.size(), 2u);
    BOOST_TEST((back[0] == a));
    BOOST_TEST((back[1] == b));
}

BOOST_AUTO_TEST_CASE(http_response) {
    const std::string body = "version: STSv1\nmode: none\nmax_age: 1\n";
    auto ok = parseHttpResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                                    std::to_string(body.size()) + "\r\n\r\n" + body, 1000);
    BOOST_TEST(ok.ok);
    BOOST_TEST(ok.body == body);
    auto noLength = parseHttpResponse("HTTP/1.0 200 OK\r\nContent-Type: TEXT/PLAIN\r\n\r\n" + body, 1000);
    BOOST_TEST(noLength.ok);
    BOOST_TEST(noLength.body == body);
    auto chunked = parseHttpResponse(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1000);
    BOOST_TEST(chunked.ok);
    BOOST_TEST(chunked.body == "hello world");
    auto html = parseHttpResponse("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + body, 1000);
    BOOST_TEST(!html.ok);
    BOOST_TEST(html.error == "Content-Type is not text/plain");
    auto redirect = parseHttpResponse("HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: text/plain\r\n\r\n", 1000);
    BOOST_TEST(!redirect.ok);
    BOOST_TEST(redirect.error.find("redirects are not followed") != std::string::npos);
    BOOST_TEST(!parseHttpResponse("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", 1000).ok);
    auto big = parseHttpResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + std::string(1001, 'x'), 1000);
    BOOST_TEST(!big.ok);
    BOOST_TEST(big.error == "policy larger than 1000 bytes");
    BOOST_TEST(!parseHttpResponse("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\nx", 1000).ok);
    BOOST_TEST(!parseHttpResponse("garbage", 1000).ok);
}

BOOST_AUTO_TEST_SUITE_END()
