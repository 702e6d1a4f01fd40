// Fuzz target: xtext codec (RFC 3461 4). Invariants: never crashes; whatever decodes
// re-encodes to pure xtext (33..126, no '=') that decodes back to the same octets; any
// octets encode to xtext that decodes back to them; a decoded value is never longer than
// its text.
#include "FuzzAssert.h"
#include "smtpproto/Xtext.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::smtp;

namespace {

void checkEncoded(const std::string& enc, const std::string& octets) {
    for (unsigned char c : enc) FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
    auto back = decodeXtext(enc);
    FUZZ_CHECK(back.has_value());
    FUZZ_CHECK(*back == octets);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (auto decoded = decodeXtext(text)) {
        FUZZ_CHECK(decoded->size() <= text.size());
        checkEncoded(encodeXtext(*decoded), *decoded);
        for (unsigned char c : text) FUZZ_CHECK(c >= 33 && c <= 126 && c != '=');
    }
    std::string octets(text);
    checkEncoded(encodeXtext(octets), octets);
    return 0;
}
