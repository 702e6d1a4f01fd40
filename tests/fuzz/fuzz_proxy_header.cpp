// Fuzz target: HAProxy PROXY v1/v2 header parser (net::parseProxyHeader). Invariants:
// never crashes; a parsed header never consumes more than the input; NeedMore always
// asks for more than it was given and never beyond the v2 cap; feeding a parsed header
// byte-prefix by prefix gives NeedMore until the full length, then the same result.
#include "FuzzAssert.h"
#include "net/ProxyProtocol.h"

#include <cstddef>
#include <cstdint>
#include <variant>

using namespace postern::net;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const char* p = reinterpret_cast<const char*>(data);
    ProxyParseResult r = parseProxyHeader(p, size);
    if (auto* need = std::get_if<ProxyNeedMore>(&r)) {
        FUZZ_CHECK(need->atLeast > size);
        FUZZ_CHECK(need->atLeast <= kProxyV2DefaultMaxLength + kProxyV2FixedLength || need->atLeast <= kProxyV1MaxLength);
    } else if (auto* ok = std::get_if<ProxyParsed>(&r)) {
        FUZZ_CHECK(ok->consumed > 0 && ok->consumed <= size);
        // Every strict prefix of a valid header is "need more", never an error.
        for (std::size_t n = 0; n < ok->consumed; ++n) {
            ProxyParseResult pr = parseProxyHeader(p, n);
            FUZZ_CHECK(std::holds_alternative<ProxyNeedMore>(pr));
        }
        ProxyParseResult again = parseProxyHeader(p, ok->consumed);
        auto* same = std::get_if<ProxyParsed>(&again);
        FUZZ_CHECK(same != nullptr && same->consumed == ok->consumed);
    } else {
        FUZZ_CHECK(!std::get<ProxyError>(r).reason.empty());
    }
    return 0;
}
