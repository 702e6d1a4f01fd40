// UTF-8 well-formedness (RFC 3629) and IDNA2008 domain normalisation (core/Utf8, core/Idna).
#include "core/Idna.h"
#include "core/Utf8.h"

#include <boost/test/unit_test.hpp>

using namespace postern::core;

BOOST_AUTO_TEST_SUITE(utf8)

BOOST_AUTO_TEST_CASE(well_formed_sequences_are_accepted) {
    BOOST_TEST(isValidUtf8(""));
    BOOST_TEST(isValidUtf8("plain ascii"));
    BOOST_TEST(isValidUtf8("gr\xc3\xbc\xc3\x9f" "e"));            // grüße
    BOOST_TEST(isValidUtf8("\xe2\x82\xac"));                      // U+20AC
    BOOST_TEST(isValidUtf8("\xed\x9f\xbf"));                      // U+D7FF, just below the surrogates
    BOOST_TEST(isValidUtf8("\xee\x80\x80"));                      // U+E000, just above them
    BOOST_TEST(isValidUtf8("\xf0\x9f\x98\x80"));                  // U+1F600
    BOOST_TEST(isValidUtf8("\xf4\x8f\xbf\xbf"));                  // U+10FFFF, the last code point
    BOOST_TEST(utf8SequenceLength("\xc3\xbc", 0) == 2u);
    BOOST_TEST(utf8SequenceLength("\xe2\x82\xac", 0) == 3u);
    BOOST_TEST(utf8SequenceLength("\xf0\x9f\x98\x80", 0) == 4u);
    BOOST_TEST(utf8SequenceLength("a", 0) == 0u);  // ASCII is not a multi-octet sequence
}

BOOST_AUTO_TEST_CASE(overlongs_surrogates_and_truncation_are_refused) {
    BOOST_TEST(!isValidUtf8("\xc0\xaf"));              // overlong '/'
    BOOST_TEST(!isValidUtf8("\xc1\xbf"));              // overlong
    BOOST_TEST(!isValidUtf8("\xe0\x80\xaf"));          // overlong 3-octet '/'
    BOOST_TEST(!isValidUtf8("\xe0\x9f\xbf"));          // overlong U+07FF
    BOOST_TEST(!isValidUtf8("\xf0\x80\x80\xaf"));      // overlong 4-octet '/'
    BOOST_TEST(!isValidUtf8("\xf0\x8f\xbf\xbf"));      // overlong U+FFFF
    BOOST_TEST(!isValidUtf8("\xed\xa0\x80"));          // U+D800 (high surrogate)
    BOOST_TEST(!isValidUtf8("\xed\xbf\xbf"));          // U+DFFF (low surrogate)
    BOOST_TEST(!isValidUtf8("\xed\xa0\xbd\xed\xb8\x80"));  // CESU-8 surrogate pair
    BOOST_TEST(!isValidUtf8("\xf4\x90\x80\x80"));      // U+110000
    BOOST_TEST(!isValidUtf8("\xf5\x80\x80\x80"));
    BOOST_TEST(!isValidUtf8("\xff"));
    BOOST_TEST(!isValidUtf8("\x80"));                  // stray continuation octet
    BOOST_TEST(!isValidUtf8("a\xc3"));                 // truncated at the end
    BOOST_TEST(!isValidUtf8("\xe2\x82"));              // truncated 3-octet
    BOOST_TEST(!isValidUtf8("\xf0\x9f\x98"));          // truncated 4-octet
    BOOST_TEST(!isValidUtf8("\xc3" "a"));              // lead octet followed by ASCII
    BOOST_TEST(!isValidUtf8(std::string("\xc3\0", 2)));
}

BOOST_AUTO_TEST_CASE(ascii_lower_leaves_utf8_alone) {
    BOOST_TEST(asciiLower("J\xc3\x9cRGEN@Example.ORG") == "j\xc3\x9crgen@example.org");  // Ü stays Ü
    BOOST_TEST(asciiLower("\xc3\x84\xc3\x96") == "\xc3\x84\xc3\x96");
    BOOST_TEST(isAscii("abc"));
    BOOST_TEST(!isAscii("\xc3\xa4"));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(idna)

BOOST_AUTO_TEST_CASE(u_label_and_a_label_have_one_form) {
    BOOST_TEST(domainToAscii("b\xc3\xbc" "cher.example").value() == "xn--bcher-kva.example");
    BOOST_TEST(domainToAscii("xn--bcher-kva.example").value() == "xn--bcher-kva.example");
    BOOST_TEST(domainToAscii("XN--BCHER-KVA.Example").value() == "xn--bcher-kva.example");
    // UTS #46 mapping folds the case of non-ASCII letters too: BÜCHER is bücher.
    BOOST_TEST(domainToAscii("B\xc3\x9c" "CHER.example").value() == "xn--bcher-kva.example");
    BOOST_TEST(domainToAscii("\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88").value() ==
               "xn--r8jz45g.xn--zckzah");  // 例え.テスト
    BOOST_TEST(domainToAscii("Example.COM").value() == "example.com");
    BOOST_TEST(normalizeAddressDomain("J\xc3\xb6rg@b\xc3\xbc" "cher.example") == "J\xc3\xb6rg@xn--bcher-kva.example");
    BOOST_TEST(normalizeAddressDomain("nodomain") == "nodomain");
}

BOOST_AUTO_TEST_CASE(a_label_decodes_to_u_label) {
    BOOST_TEST(domainToUnicode("xn--bcher-kva.example").value() == "b\xc3\xbc" "cher.example");
    BOOST_TEST(!domainToUnicode("example.com").has_value());  // no A-label: no other spelling
    BOOST_TEST(hasALabel("a.XN--bcher-kva.example"));
    BOOST_TEST(!hasALabel("xn-bcher.example"));
}

BOOST_AUTO_TEST_CASE(bad_labels_are_refused) {
    BOOST_TEST(!domainToAscii("xn--zz.example").has_value());        // invalid punycode
    BOOST_TEST(!domainToAscii("xn--a.example").has_value());         // decodes to a forbidden label
    BOOST_TEST(!domainToAscii("b\xc3" "cher.example").has_value());  // not UTF-8
    BOOST_TEST(!domainToAscii("\xe2\x80\x8d" "x.example").has_value());  // ZWJ without context (CONTEXTJ)
    BOOST_TEST(!domainToAscii(std::string(64, 'a') + "\xc3\xbc.example").has_value());  // label > 63
    BOOST_TEST(!domainToAscii("").has_value());
    // Found by fuzz_utf8_address: libidn2 accepts this A-label, but its U-label encodes to
    // another one (the mixed-case basic part moves the insertion): not a valid A-label.
    BOOST_TEST(!domainToAscii("xn--bchOOOOOOOOOOOOOOOOOer-kva.me").has_value());
    BOOST_TEST(!domainToAscii("a\x10" "b.example").has_value());  // control characters
    BOOST_TEST(!domainToAscii("\xE2\x80\x8B").has_value());              // U+200B maps to nothing
    BOOST_TEST(!domainToAscii("a.\xE2\x80\x8B.example").has_value());    // ... leaving an empty label
    BOOST_TEST(!domainToUnicode("xn--zz.example").has_value());
}

// RFC 4518 2.2: what LDAP string matching drops or reads as a space; a login holding one
// would find another name's entry under a counter of its own.
BOOST_AUTO_TEST_CASE(insignificant_characters_of_directory_matching) {
    for (const char* bad : {"alice ", " alice", "al\tice", "alice\xC2\xA0",      // U+00A0 no-break space
                            "\xE3\x80\x80" "alice",                            // U+3000 ideographic space
                            "al\xC2\xAD" "ice",                                 // U+00AD soft hyphen
                            "al\xE2\x80\x8B" "ice",                            // U+200B zero width space
                            "alice\xEF\xB8\x8F",                               // U+FE0F variation selector
                            "al\xCD\x8F" "ice",                                 // U+034F combining grapheme joiner
                            "alice\xE2\x80\xA8", "alice\xC2\x85", "a\x7F"})
        BOOST_TEST(hasInsignificantCharacters(bad), bad);
    for (const char* good : {"alice@example.test", "j\xC3\xB6rg@example.test", "jo\xCC\x88rg",  // o + U+0308
                             "\xE7\x94\xB0\xE4\xB8\xAD@example.test", "first.last+tag@x.test",
                             "caf\xE9"})  // ill-formed: not this check's business
        BOOST_TEST(!hasInsignificantCharacters(good), good);
}

BOOST_AUTO_TEST_SUITE_END()
