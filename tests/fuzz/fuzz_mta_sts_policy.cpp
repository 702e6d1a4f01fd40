// Fuzz target: an MTA-STS policy body (RFC 8461 3.2) and the HTTP response around it, as sent
// by a recipient domain's policy server - untrusted.
// Invariants: never crashes; a parsed policy has max_age <= 31557600, a mode, mx patterns
// that are lower-case without white space, at least one under enforce/testing; the cache
// line form reads back to the same policy; an accepted HTTP body is never above the limit.
#include "FuzzAssert.h"
#include "mtasts/Fetcher.h"
#include "mtasts/Policy.h"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

using namespace postern::mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string in(reinterpret_cast<const char*>(data), size);
    std::string error;
    auto p = parsePolicy(in, &error);
    if (p) {
        FUZZ_CHECK(p->maxAge <= MaxMaxAge);
        FUZZ_CHECK(!p->maxAgeCapped || p->maxAge == MaxMaxAge);  // above the maximum: capped to it
        FUZZ_CHECK(p->mode == Mode::None || !p->mx.empty());
        for (const auto& m : p->mx) {
            FUZZ_CHECK(!m.empty());
            for (char c : m) FUZZ_CHECK(!std::isspace(static_cast<unsigned char>(c)) && !std::isupper(static_cast<unsigned char>(c)));
            if (m.rfind("*.", 0) != 0) FUZZ_CHECK(mxMatches(m, m));
        }
        auto back = parsePolicyLine(policyLine(*p));
        FUZZ_CHECK(back && *back == *p);
    } else {
        FUZZ_CHECK(!error.empty());
    }
    if (size > 0) {
        std::size_t limit = data[0] * 4u;
        FetchResult r = parseHttpResponse(in.substr(1), limit);
        FUZZ_CHECK(r.ok || !r.error.empty());
        if (r.ok) FUZZ_CHECK(r.body.size() <= limit);
    }
    return 0;
}
