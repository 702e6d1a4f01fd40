// Fuzz target: MimeDowngrade (delivery/MimeDowngrade.h), the MIME structure of a queued
// message that anyone may have sent, read when it goes to a next hop without 8BITMIME.
// Input: one octet for the piece size (1..256), then the message (tests/CMakeLists.txt lets
// it grow past MaxPiece). Invariants: never crashes; any split gives the output of the whole
// at once; nothing converted = the input unchanged; the output grows by a bounded factor.
#include "FuzzAssert.h"
#include "delivery/MimeDowngrade.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::size_t piece = 1 + data[0];
    const std::string_view message(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool converted = false;
    const std::string whole = postern::delivery::MimeDowngrade::convert(message, &converted);
    postern::delivery::MimeDowngrade d;
    std::string out;
    for (std::size_t i = 0; i < message.size(); i += piece) d.feed(message.substr(i, piece), out);
    d.finish(out);
    FUZZ_CHECK(out == whole);
    FUZZ_CHECK(d.converted() == converted);
    if (!converted) FUZZ_CHECK(whole == message);
    // The output never grows beyond what quoted-printable and the labels can add.
    FUZZ_CHECK(whole.size() <= 3 * message.size() + message.size() / 24 + 64 * (message.size() / 16 + 2));
    return 0;
}
