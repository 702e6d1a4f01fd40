// The milter packet codec and message editing: packets as libmilter frames them, every
// reply a milter may send, malformed ones refused, and the modification actions applied
// to a message the way Postfix's cleanup applies them.
#include "milter/MessageEdit.h"
#include "milter/MilterChain.h"
#include "milter/MilterProtocol.h"

#include <boost/test/unit_test.hpp>

#include <string>

using namespace postern::milter;
using namespace std::string_literals;

namespace {

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::string pk(char c, const std::string& d = "") { return be32(static_cast<std::uint32_t>(d.size() + 1)) + c + d; }

Reply parse(const std::string& p) {
    std::string error;
    auto r = parseReply(p, error);
    BOOST_REQUIRE_MESSAGE(r, "parse failed: " << error);
    return *r;
}
bool refused(const std::string& p) {
    std::string error;
    return !parseReply(p, error) && !error.empty();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(milter_protocol)

BOOST_AUTO_TEST_CASE(commands_are_framed_as_libmilter_reads_them) {
    BOOST_TEST(optNeg(6, act::All, proto::Offered) == pk('O', be32(6) + be32(0x1ff) + be32(proto::Offered)));
    BOOST_TEST(macros('C', {{"j", "mx.example"}, {"{client_addr}", "192.0.2.1"}}) ==
               pk('D', "Cj\0mx.example\0{client_addr}\0" "192.0.2.1\0"s));
    BOOST_TEST(connect("[192.0.2.1]", '4', 2525, "192.0.2.1") == pk('C', "[192.0.2.1]\0" "4\x09\xdd" "192.0.2.1\0"s));
    BOOST_TEST(connect("x", 'U', 0, "") == pk('C', "x\0U"s));
    BOOST_TEST(helo("client.example") == pk('H', "client.example\0"s));
    BOOST_TEST(envelope('M', "a@example.org") == pk('M', "<a@example.org>\0"s));
    BOOST_TEST(envelope('R', "") == pk('R', "<>\0"s));
    BOOST_TEST(header("Subject", "hi") == pk('L', "Subject\0hi\0"s));
    // A NUL in a value would end it early on the milter's side: the value is cut there.
    BOOST_TEST(helo("a\0b"s) == pk('H', "a\0"s));
    BOOST_TEST(packet('E') == "\0\0\0\1E"s);
}

BOOST_AUTO_TEST_CASE(verdicts_and_negotiation) {
    BOOST_TEST((parse("a").kind == Reply::Kind::Accept));
    BOOST_TEST((parse("c").kind == Reply::Kind::Continue));
    BOOST_TEST((parse("d").kind == Reply::Kind::Discard));
    BOOST_TEST((parse("r").kind == Reply::Kind::Reject));
    BOOST_TEST((parse("t").kind == Reply::Kind::TempFail));
    BOOST_TEST((parse("s").kind == Reply::Kind::Skip));
    BOOST_TEST((parse("p").kind == Reply::Kind::Progress));
    Reply o = parse("O" + be32(6) + be32(0x21) + be32(proto::NoHelo | proto::NrHdr));
    BOOST_TEST((o.kind == Reply::Kind::OptNeg));
    BOOST_TEST(o.version == 6u);
    BOOST_TEST(o.actions == 0x21u);
    BOOST_TEST(o.protocol == (proto::NoHelo | proto::NrHdr));
    BOOST_TEST(refused("O" + be32(6)));
    BOOST_TEST(refused("Z"));
    BOOST_TEST(refused(""));
}

BOOST_AUTO_TEST_CASE(reply_codes_are_checked) {
    Reply y = parse("y554 5.7.1 Gtube pattern\0"s);
    BOOST_TEST((y.kind == Reply::Kind::ReplyCode));
    BOOST_TEST(y.text == "554 5.7.1 Gtube pattern");
    BOOST_TEST(parse("y550-5.7.1 one\r\n550 5.7.1 two\0"s).text == "550-5.7.1 one\r\n550 5.7.1 two");
    BOOST_TEST(validReplyCode("451 4.7.1 later"));
    BOOST_TEST(validReplyCode("550"));
    BOOST_TEST(!validReplyCode("250 2.0.0 ok"));           // only refusals
    BOOST_TEST(!validReplyCode("550 4.7.1 mixed class"));  // enhanced class must match
    BOOST_TEST(!validReplyCode("550 a\nb"));               // no bare line ends (reply injection)
    BOOST_TEST(!validReplyCode("550-a\r\n451 b"));         // one code for every line
    BOOST_TEST(!validReplyCode("550 a\r\n550 b"));         // continuation lines use '-'
    BOOST_TEST(refused("y250 ok\0"s));
    BOOST_TEST(refused("y550 unterminated"));
}

BOOST_AUTO_TEST_CASE(modifications_parse) {
    Reply h = parse("hX-Spam\0yes\0"s);
    BOOST_TEST((h.kind == Reply::Kind::AddHeader));
    BOOST_TEST(h.name == "X-Spam");
    BOOST_TEST(h.text == "yes");
    BOOST_TEST(h.neededAction() == act::AddHdrs);
    Reply i = parse("i" + be32(2) + "A\0b\0"s);
    BOOST_TEST((i.kind == Reply::Kind::InsHeader));
    BOOST_TEST(i.index == 2u);
    Reply m = parse("m" + be32(1) + "Subject\0\0"s);
    BOOST_TEST((m.kind == Reply::Kind::ChgHeader));
    BOOST_TEST(m.text.empty());
    BOOST_TEST(parse("+<x@example.org>\0"s).text == "x@example.org");
    BOOST_TEST(parse("+x@example.org\0"s).text == "x@example.org");
    Reply p = parse("2<x@example.org>\0NOTIFY=NEVER\0"s);
    BOOST_TEST((p.kind == Reply::Kind::AddRcpt));
    BOOST_TEST(p.args == "NOTIFY=NEVER");
    BOOST_TEST(p.neededAction() == act::AddRcptPar);
    // smfi_addrcpt_par(ctx, rcpt, NULL): '2' without arguments still needs ADDRCPT_PAR only.
    BOOST_TEST(parse("2<x@example.org>\0"s).neededAction() == act::AddRcptPar);
    BOOST_TEST(parse("+<x@example.org>\0"s).neededAction() == act::AddRcpt);
    BOOST_TEST((parse("-<x@example.org>\0"s).kind == Reply::Kind::DelRcpt));
    BOOST_TEST(parse("e<>\0"s).text == "");
    BOOST_TEST(parse("qspam\0"s).text == "spam");
    BOOST_TEST(parse("bnew body"s).text == "new body");
    // Malformed: unterminated, a header name with a colon or CRLF, an address with CRLF.
    BOOST_TEST(refused("hX-Spam\0yes"s));
    BOOST_TEST(refused("hX:Spam\0yes\0"s));
    BOOST_TEST(refused("hX\r\nBcc\0yes\0"s));
    BOOST_TEST(refused("+<a@b>\r\nRCPT TO:<c@d>\0"s));
    BOOST_TEST(refused("+\0"s));
    BOOST_TEST(refused("i\0\0"s));
}

BOOST_AUTO_TEST_CASE(packet_reader_frames_and_limits) {
    PacketReader r;
    std::string two = pk('c') + pk('y', "550 no\0"s);
    r.feed(two.data(), 3);
    BOOST_TEST(!r.next());
    r.feed(two.data() + 3, two.size() - 3);
    BOOST_TEST(*r.next() == "c");
    BOOST_TEST(*r.next() == "y550 no\0"s);
    BOOST_TEST(!r.next());
    BOOST_TEST(!r.bad());
    PacketReader big;
    std::string huge = be32(static_cast<std::uint32_t>(MaxPacket + 1)) + "b";
    big.feed(huge.data(), huge.size());
    BOOST_TEST(!big.next());
    BOOST_TEST(big.bad());
    PacketReader zero;
    zero.feed("\0\0\0\0", 4);
    BOOST_TEST(!zero.next());
    BOOST_TEST(zero.bad());
}

BOOST_AUTO_TEST_CASE(split_and_join_keep_the_message) {
    const std::string raw = "Received: from x\r\n\tby y\r\nSubject: hi\r\nFrom: <a@example.org>\r\n\r\nbody\r\n";
    MessageParts p = splitMessage(raw);
    BOOST_TEST(p.headers.size() == 3u);
    BOOST_TEST(p.headers[0].second == " from x\r\n\tby y");
    BOOST_TEST(valueForMilter(p.headers[1].second) == "hi");
    // One space is left out, no more (Sendmail, Postfix): "Name: value" rebuilt by the milter
    // is the stored field.
    BOOST_TEST(valueForMilter("\tHello") == "\tHello");
    BOOST_TEST(valueForMilter("  Hello") == " Hello");
    BOOST_TEST(valueForMilter("Hello") == "Hello");
    BOOST_TEST(p.body == "body\r\n");
    BOOST_TEST(joinMessage(p) == raw);
    // No empty line: all header; a line that is no field starts the body.
    BOOST_TEST(joinMessage(splitMessage("Subject: x\r\n")) == "Subject: x\r\n");
    MessageParts odd = splitMessage("Subject: x\r\nnot a header\r\nmore\r\n");
    BOOST_TEST(odd.headers.size() == 1u);
    BOOST_TEST(odd.body == "not a header\r\nmore\r\n");
    BOOST_TEST(joinMessage(odd) == "Subject: x\r\nnot a header\r\nmore\r\n");
}

// RFC 5322 4.5 (obs-optional): blanks may stand between a field name and its colon, and a
// receiver must accept that. Such a field is a field (Postfix's is_header()), not the start
// of the body: otherwise every field after it (From, MIME) reached milters as body, hidden
// from rspamd or OpenDMARC while mail readers saw them. The milter gets the bare name; the
// stored line is kept byte for byte; edits find the field by its bare name.
BOOST_AUTO_TEST_CASE(a_blank_before_the_colon_is_still_a_field) {
    const std::string raw = "Received: x\r\nX-Old \t: 1\r\nFrom: <a@example.org>\r\n\r\nbody\r\n";
    MessageParts p = splitMessage(raw);
    BOOST_TEST_REQUIRE(p.headers.size() == 3u);
    BOOST_TEST(headerName(p.headers[1].first) == "X-Old");
    BOOST_TEST(p.headers[2].first == "From");
    BOOST_TEST(p.body == "body\r\n");
    BOOST_TEST(joinMessage(p) == raw);
    postern::core::MilterMessage env;
    bool started = false;
    Reply chg;
    chg.kind = Reply::Kind::ChgHeader;
    chg.index = 1;
    chg.name = "x-old";
    chg.text = "2";
    applyModification(chg, p, env, started);
    BOOST_TEST(joinMessage(p) == "Received: x\r\nX-Old \t: 2\r\nFrom: <a@example.org>\r\n\r\nbody\r\n");
    // Blanks only, or a blank inside the name: not a field.
    BOOST_TEST(splitMessage("Subject: x\r\n : y\r\n").headers.size() == 1u);
    BOOST_TEST(splitMessage("Subject: x\r\nX Old: y\r\n").headers.size() == 1u);
}

// A replaced body follows an empty line also where the message had none (a header-only
// message): without it the new body joined the header section (Postfix's cleanup writes the
// empty line first too).
BOOST_AUTO_TEST_CASE(a_replaced_body_of_a_header_only_message_gets_its_empty_line) {
    MessageParts p = splitMessage("Subject: probe\r\n");
    BOOST_TEST(!p.hasSeparator);
    postern::core::MilterMessage env;
    bool started = false;
    Reply body;
    body.kind = Reply::Kind::ReplBody;
    body.text = "Note: scanned\r\n";
    applyModification(body, p, env, started);
    BOOST_TEST(joinMessage(p) == "Subject: probe\r\n\r\nNote: scanned\r\n");
}

// A recipient one milter adds and a later one deletes is not delivered: edits count in the
// order they come (Postfix's cleanup). Before, deletes were applied first and adds after.
BOOST_AUTO_TEST_CASE(a_recipient_added_then_deleted_is_gone) {
    MessageParts p = splitMessage("Subject: x\r\n\r\nbody\r\n");
    postern::core::MilterMessage env;
    env.recipients = {"a@example.org"};
    bool started = false;
    Reply add, del;
    add.kind = Reply::Kind::AddRcpt;
    add.text = "archive@example.net";
    del.kind = Reply::Kind::DelRcpt;
    del.text = "Archive@example.net";
    applyModification(add, p, env, started);
    applyModification(del, p, env, started);
    BOOST_TEST(env.addedRecipients.empty());
    BOOST_TEST(env.deletedRecipients.empty());
    BOOST_TEST(env.recipients == std::vector<std::string>{"a@example.org"}, boost::test_tools::per_element());
    // An envelope recipient deleted and added again stays: deleted, then added.
    del.text = "a@example.org";
    add.text = "a@example.org";
    applyModification(del, p, env, started);
    applyModification(add, p, env, started);
    BOOST_TEST(env.deletedRecipients == std::vector<std::string>{"a@example.org"}, boost::test_tools::per_element());
    BOOST_TEST(env.addedRecipients == std::vector<std::string>{"a@example.org"}, boost::test_tools::per_element());
}

// Each protocol version is offered only the steps it has (Postfix's milter8.c masks).
BOOST_AUTO_TEST_CASE(older_protocol_versions_are_offered_only_their_steps) {
    using namespace postern::milter::proto;
    BOOST_TEST(offeredFor(6) == Offered);
    BOOST_TEST((offeredFor(2) & (NoData | NoUnknown | Skip | NrHdr | NrRcpt | HdrLeadSpc)) == 0u);
    BOOST_TEST((offeredFor(2) & NoEoh) != 0u);
    BOOST_TEST((offeredFor(3) & NoUnknown) != 0u);
    BOOST_TEST((offeredFor(3) & NoData) == 0u);
    BOOST_TEST((offeredFor(4) & NoData) != 0u);
    BOOST_TEST((offeredFor(5) & (Skip | NrHdr | HdrLeadSpc)) == 0u);
    BOOST_TEST(!hasDataStep(3));
    BOOST_TEST(hasDataStep(4));
}

BOOST_AUTO_TEST_CASE(modifications_apply_like_postfix) {
    MessageParts p = splitMessage("Subject: one\r\nX-A: 1\r\nX-A: 2\r\n\r\nold\r\n");
    postern::core::MilterMessage env;
    env.recipients = {"a@example.org", "b@example.org"};
    bool started = false;
    auto apply = [&](const std::string& packetBody) { applyModification(parse(packetBody), p, env, started); };
    apply("hX-Added\0v\0"s);
    apply("i" + be32(0) + "DKIM-Signature\0v=1;\n\tb=x\0"s);
    apply("m" + be32(2) + "x-a\0two\0"s);  // second X-A, name case-insensitive
    apply("m" + be32(1) + "Subject\0\0"s);  // empty value deletes
    apply("m" + be32(1) + "X-Missing\0new\0"s);  // missing: added
    apply("+<c@example.org>\0"s);
    apply("-<A@example.org>\0"s);
    apply("e<s@example.org>\0"s);
    apply("bnew\nbody"s);
    apply("b\r\n"s);
    apply("qheld for review\0"s);
    p.body = toCrlf(p.body);
    BOOST_TEST(joinMessage(p) ==
               "DKIM-Signature: v=1;\r\n\tb=x\r\nX-A: 1\r\nX-A: two\r\nX-Added: v\r\nX-Missing: new\r\n\r\nnew\r\nbody\r\n");
    BOOST_TEST(p.changed);
    BOOST_TEST(env.recipients == (std::vector<std::string>{"b@example.org", "c@example.org"}));
    BOOST_TEST(env.addedRecipients == std::vector<std::string>{"c@example.org"});
    BOOST_TEST(env.deletedRecipients == std::vector<std::string>{"A@example.org"});
    BOOST_TEST(env.sender == "s@example.org");
    BOOST_TEST(env.senderChanged);
    BOOST_TEST(env.quarantine);
    BOOST_TEST(env.quarantineReason == "held for review");
}

// SMFIP_HDR_LEADSPC negotiated: a milter's header values are stored as it gives them, its
// own leading space (or tab) included, so a field it signs with simple canonicalisation is
// stored byte for byte.
BOOST_AUTO_TEST_CASE(modifications_with_hdr_leadspc_keep_the_milters_leading_blank) {
    MessageParts p = splitMessage("Subject: one\r\n\r\nbody\r\n");
    postern::core::MilterMessage env;
    bool started = false;
    applyModification(parse("hX-Tab\0\tv\0"s), p, env, started, /*leadSpace=*/true);
    applyModification(parse("hX-Space\0 w\0"s), p, env, started, true);
    applyModification(parse("m" + be32(1) + "Subject\0 two\0"s), p, env, started, true);
    BOOST_TEST(joinMessage(p) == "Subject: two\r\nX-Tab:\tv\r\nX-Space: w\r\n\r\nbody\r\n");
}

BOOST_AUTO_TEST_CASE(endpoints_parse) {
    std::string e;
    auto a = MilterEndpoint::parse("inet:127.0.0.1:11332", e);
    BOOST_REQUIRE(a);
    BOOST_TEST(a->host == "127.0.0.1");
    BOOST_TEST(a->port == 11332);
    auto b = MilterEndpoint::parse("inet:[::1]:8891", e);
    BOOST_REQUIRE(b);
    BOOST_TEST(b->host == "::1");
    auto u = MilterEndpoint::parse("unix:/run/opendkim.sock", e);
    BOOST_REQUIRE(u);
    BOOST_TEST(u->path == "/run/opendkim.sock");
    BOOST_TEST(!MilterEndpoint::parse("inet:host", e));
    BOOST_TEST(!MilterEndpoint::parse("inet:host:99999", e));
    BOOST_TEST(!MilterEndpoint::parse("unix:relative", e));
    BOOST_TEST(!MilterEndpoint::parse("tcp:host:1", e));
}

BOOST_AUTO_TEST_SUITE_END()
