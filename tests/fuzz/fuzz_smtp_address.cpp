// Fuzz target: RFC 5321 path and mailbox parsers (smtp::parsePath Reverse/Forward, prefix
// and whole-text modes; smtp::parseMailbox). Invariants: never crashes; `consumed` stays in
// the input and ends at '>'; an ok path's address() parses again (as a mailbox and as a
// forward-path) to the same local part and domain; a domain name is lower-case.
#include "FuzzAssert.h"
#include "smtpproto/SmtpAddress.h"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::smtp;

namespace {

void checkRoundTrip(const ParsedPath& p, const PathOptions& po) {
    if (!p.ok || p.isNull || p.isPostmaster)
        return;
    if (!p.isAddressLiteral)  // "[IPv6:...]" keeps its tag's spelling
        for (char c : p.domain)
            FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    const std::string address = p.address();
    // A mailbox (local part <= 64, domain <= 255) can be longer than a path may be
    // (RFC 5321 4.5.3.1.3: 256 octets with the angle brackets): only then the path form is
    // refused, as PathTooLong.
    ParsedPath again = parsePath("<" + address + ">", PathKind::Forward, po);
    if (address.size() + 2 > 256) {
        FUZZ_CHECK(!again.ok && again.error == PathError::PathTooLong);
    } else {
        FUZZ_CHECK(again.ok);
        FUZZ_CHECK(again.localPart == p.localPart);
        FUZZ_CHECK(again.domain == p.domain);
        FUZZ_CHECK(again.address() == address);
    }
    ParsedPath mailbox = parseMailbox(address, po);
    FUZZ_CHECK(mailbox.ok);
    FUZZ_CHECK(mailbox.localPart == p.localPart);
    FUZZ_CHECK(mailbox.domain == p.domain);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    PathOptions po;
    po.allowUtf8 = (data[0] & 1) != 0;
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    for (PathKind kind : {PathKind::Reverse, PathKind::Forward}) {
        ParsedPath whole = parsePath(text, kind, po);
        checkRoundTrip(whole, po);
        if (whole.ok && kind == PathKind::Forward)
            FUZZ_CHECK(!whole.isNull);

        std::size_t consumed = static_cast<std::size_t>(-1);
        ParsedPath prefix = parsePath(text, kind, po, &consumed);
        if (prefix.ok) {
            FUZZ_CHECK(consumed >= 2 && consumed <= text.size());
            FUZZ_CHECK(text[consumed - 1] == '>');
            // The whole-text parse of exactly the consumed prefix agrees.
            ParsedPath exact = parsePath(text.substr(0, consumed), kind, po);
            FUZZ_CHECK(exact.ok);
            FUZZ_CHECK(exact.localPart == prefix.localPart && exact.domain == prefix.domain);
            checkRoundTrip(prefix, po);
        }
        if (whole.ok)
            FUZZ_CHECK(prefix.ok);
    }
    ParsedPath mailbox = parseMailbox(text, po);
    if (mailbox.ok) {
        FUZZ_CHECK(!mailbox.isNull && !mailbox.isPostmaster);
        checkRoundTrip(mailbox, po);
    }
    (void)isDotString(text, po.allowUtf8);
    return 0;
}
