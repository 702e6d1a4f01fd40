// core::EventLine: every value escaped, keys and event names as written, numbers bare.
#include "core/EventLine.h"

#include <boost/test/unit_test.hpp>

#include <map>
#include <regex>
#include <string>

using postern::core::EventLine;
using postern::core::logUnescape;

namespace {

// A reader of the line the way log tools read it: key=token or key="text", split on spaces
// outside quotes, then the \xHH escapes undone.
std::map<std::string, std::string> parse(const std::string& line) {
    std::map<std::string, std::string> fields;
    std::size_t i = 0;
    while (i < line.size()) {
        const std::size_t eq = line.find('=', i);
        BOOST_REQUIRE(eq != std::string::npos);
        const std::string key = line.substr(i, eq - i);
        BOOST_REQUIRE(key.find(' ') == std::string::npos);
        std::size_t end;
        std::string value;
        if (eq + 1 < line.size() && line[eq + 1] == '"') {
            end = line.find('"', eq + 2);
            BOOST_REQUIRE(end != std::string::npos);
            value = line.substr(eq + 2, end - eq - 2);
            ++end;
        } else {
            end = line.find(' ', eq + 1);
            if (end == std::string::npos) end = line.size();
            value = line.substr(eq + 1, end - eq - 1);
        }
        BOOST_REQUIRE(fields.emplace(key, logUnescape(value)).second);  // no key twice: nothing forged
        i = end + 1;
    }
    return fields;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(event_line)

BOOST_AUTO_TEST_CASE(event_first_then_fields_in_order) {
    const std::string line = EventLine("queue.deliver").add("id", "q1").add("to", "a@b.test").add("n", 3).str();
    BOOST_TEST(line == "event=queue.deliver id=q1 to=a@b.test n=3");
}

BOOST_AUTO_TEST_CASE(session_id_comes_first) {
    BOOST_TEST(EventLine::inSession("1f3a", "connect").add("svc", "smtp").str() == "s=1f3a event=connect svc=smtp");
}

BOOST_AUTO_TEST_CASE(numbers_are_bare_and_units_follow) {
    const std::string line = EventLine("x")
                                 .add("a", 0)
                                 .add("b", -12L)
                                 .add("c", std::size_t{18446744073709551615ULL})
                                 .add("ttl", 300LL, "s")
                                 .str();
    BOOST_TEST(line == "event=x a=0 b=-12 c=18446744073709551615 ttl=300s");
}

BOOST_AUTO_TEST_CASE(values_are_escaped_one_token_each) {
    const std::string line = EventLine("auth.fail")
                                 .add("sp", "a b")
                                 .add("eq", "x result=ok")
                                 .add("q", "q\"uote")
                                 .add("bs", "back\\slash")
                                 .add("crlf", "l\r\nevent=auth.ok")
                                 .add("empty", "")
                                 .add("utf8", "gr\xc3\xbc\xc3\x9f" "e")
                                 .add("bad", "a\xff\xc3(")
                                 .str();
    BOOST_TEST(line ==
               "event=auth.fail sp=a\\x20b eq=x\\x20result\\x3dok q=q\\x22uote bs=back\\x5cslash "
               "crlf=l\\x0d\\x0aevent\\x3dauth.ok empty=- utf8=gr\xc3\xbc\xc3\x9f" "e bad=a\\xff\\xc3(");
    BOOST_TEST(line.find('\n') == std::string::npos);
    BOOST_TEST(line.find('\r') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(addresses_in_angle_brackets_null_path_empty) {
    BOOST_TEST(EventLine("x").address("from", "").address("to", "a b@c").str() == "event=x from=<> to=<a\\x20b@c>");
}

BOOST_AUTO_TEST_CASE(text_is_quoted_with_quotes_and_controls_escaped) {
    const std::string line = EventLine("pg.down").text("error", "could not \"connect\" a=b\\\n\x85").text("e", "").str();
    BOOST_TEST(line == "event=pg.down error=\"could not \\x22connect\\x22 a=b\\x5c\\x0a\\x85\" e=\"\"");
}

BOOST_AUTO_TEST_CASE(hostile_user_name_reads_back_exactly) {
    const std::string user = "a b=c\"d";
    const std::string line = EventLine::inSession("00ff", "auth.fail")
                                 .add("svc", "smtp")
                                 .add("ip", "192.0.2.7")
                                 .add("user", user)
                                 .add("result", "bad_password")
                                 .text("detail", "user " + user + " said \"hi\"")
                                 .str();
    // fail2ban-style: the whole value is one \S+ token and the line has one result=.
    std::smatch m;
    BOOST_REQUIRE(std::regex_search(line, m, std::regex(R"(event=auth\.fail svc=\S+ ip=(\S+) user=(\S+) )")));
    BOOST_TEST(m[1].str() == "192.0.2.7");
    BOOST_TEST(logUnescape(m[2].str()) == user);
    const std::regex result(" result=");
    BOOST_TEST(std::distance(std::sregex_iterator(line.begin(), line.end(), result), std::sregex_iterator()) == 1);
    // A quoted-value reader gets every field back.
    const auto fields = parse(line);
    BOOST_TEST(fields.size() == 7u);
    BOOST_TEST(fields.at("s") == "00ff");
    BOOST_TEST(fields.at("event") == "auth.fail");
    BOOST_TEST(fields.at("user") == user);
    BOOST_TEST(fields.at("result") == "bad_password");
    BOOST_TEST(fields.at("detail") == "user " + user + " said \"hi\"");
}

BOOST_AUTO_TEST_CASE(long_values_are_cut_visibly) {
    const std::string line = EventLine("x").add("v", std::string(300, 'a')).text("t", std::string(1000, 'b')).str();
    BOOST_TEST(line == "event=x v=" + std::string(128, 'a') + "... t=\"" + std::string(400, 'b') + "...\"");
}

BOOST_AUTO_TEST_SUITE_END()
