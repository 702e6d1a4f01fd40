// One token per value in operator log lines, whatever the client sent.
#include "core/LogValue.h"

#include <boost/test/unit_test.hpp>

using postern::core::logValue;

BOOST_AUTO_TEST_SUITE(log_value)

BOOST_AUTO_TEST_CASE(plain_values_unchanged) {
    BOOST_TEST(logValue("alice@example.test") == "alice@example.test");
    BOOST_TEST(logValue("gr\xc3\xbc\xc3\x9f" "e@example.test") == "gr\xc3\xbc\xc3\x9f" "e@example.test");
}

BOOST_AUTO_TEST_CASE(separators_and_controls_cannot_forge_fields_or_lines) {
    BOOST_TEST(logValue("a b") == "a\\x20b");
    BOOST_TEST(logValue("x result=ok") == "x\\x20result\\x3dok");
    BOOST_TEST(logValue("q\"uote") == "q\\x22uote");
    BOOST_TEST(logValue("back\\slash") == "back\\x5cslash");
    BOOST_TEST(logValue("line\r\nevent=auth.ok") == "line\\x0d\\x0aevent\\x3dauth.ok");
    BOOST_TEST(logValue(std::string("nul\0x", 5)) == "nul\\x00x");
    BOOST_TEST(logValue("\x7f") == "\\x7f");
    BOOST_TEST(logValue("tab\t") == "tab\\x09");
}

BOOST_AUTO_TEST_CASE(empty_is_a_dash_and_long_values_are_cut) {
    BOOST_TEST(logValue("") == "-");
    std::string longValue(500, 'a');
    std::string got = logValue(longValue);
    BOOST_TEST(got == std::string(128, 'a') + "...");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(log_value_utf8)

using postern::core::logUnescape;

BOOST_AUTO_TEST_CASE(invalid_utf8_bytes_are_escaped_valid_sequences_kept) {
    BOOST_TEST(logValue("\xff") == "\\xff");
    BOOST_TEST(logValue("a\xc3") == "a\\xc3");                 // cut sequence
    BOOST_TEST(logValue("\xc0\xaf") == "\\xc0\\xaf");          // overlong '/'
    BOOST_TEST(logValue("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // surrogate
    BOOST_TEST(logValue("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    BOOST_TEST(logValue("\xe2\x82\xac\xf0\x9f\x93\xa7") == "\xe2\x82\xac\xf0\x9f\x93\xa7");  // euro, envelope emoji
    BOOST_TEST(logValue("nel\xc2\x85") == "nel\\xc2\\x85");     // C1 control
}

BOOST_AUTO_TEST_CASE(cut_never_splits_a_sequence) {
    std::string s(127, 'a');
    s += "\xc3\xbc" "tail";
    BOOST_TEST(logValue(s) == std::string(127, 'a') + "\xc3\xbc...");
}

BOOST_AUTO_TEST_CASE(unescape_gives_the_value_back) {
    for (std::string v : {std::string("a b=c\"d\\e\r\n"), std::string("\xff\xc3(x"), std::string("plain")})
        BOOST_TEST(logUnescape(logValue(v)) == v);
}

BOOST_AUTO_TEST_SUITE_END()
