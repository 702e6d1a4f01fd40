// dovecot-uidlist (format 3 and Courier's format 1): the POP3 UIDL Dovecot gave each message.
#include "store/DovecotUidlist.h"

#include <boost/test/unit_test.hpp>

using postern::store::dovecotUidls;

BOOST_AUTO_TEST_SUITE(dovecot_uidlist)

BOOST_AUTO_TEST_CASE(format_3_with_extensions_and_p_fields) {
    const auto m = dovecotUidls(
        "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
        "25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
        "25017 W2481 :1276533073.M242911P3632.kurkku:2,F\n"
        "25018 W100 Pold-server-uidl-7 :1276533074.M1P1.kurkku:2,S\n"
        "25019 P :1276533075.M1P1.kurkku\n"           // an empty P: the default format
        "garbage line without a name\n"
        "x :1276533076.M1P1.kurkku\n"                 // no UID: skipped
        "\n");
    BOOST_TEST(m.size() == 4u);
    BOOST_TEST(m.at("1276528487.M364837P9451.kurkku,S=1355,W=1394") == "000061ae4c0907b0");
    BOOST_TEST(m.at("1276533073.M242911P3632.kurkku") == "000061b94c0907b0");
    BOOST_TEST(m.at("1276533074.M1P1.kurkku") == "old-server-uidl-7");
    BOOST_TEST(m.at("1276533075.M1P1.kurkku") == "000061bb4c0907b0");
}

BOOST_AUTO_TEST_CASE(format_1_and_refusals) {
    const auto m = dovecotUidls("1 1234567890 100\r\n1 1234567890.M1P1.hostname:2,S\r\n2 1234567891.M2P2.hostname:2,\r\n");
    BOOST_TEST(m.size() == 2u);
    BOOST_TEST(m.at("1234567890.M1P1.hostname") == "00000001499602d2");
    BOOST_TEST(m.at("1234567891.M2P2.hostname") == "00000002499602d2");
    BOOST_TEST(dovecotUidls("").empty());
    BOOST_TEST(dovecotUidls("3 N5 G00\n1 :a.b.c\n").empty());  // no UIDVALIDITY
    BOOST_TEST(dovecotUidls("2 V1 N5\n1 :a.b.c\n").empty());   // unknown version
    // A P value that is no valid UIDL (over 70 octets) falls back to the default format.
    const auto p = dovecotUidls("3 V1\n5 P" + std::string(71, 'x') + " :a.b.c:2,\n");
    BOOST_TEST(p.at("a.b.c") == "0000000500000001");
}

BOOST_AUTO_TEST_SUITE_END()
