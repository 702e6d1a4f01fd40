// Fuzz target: the TXT record of _mta-sts.<domain> (RFC 8461 3.1) - from DNS, untrusted - and
// MX name matching against a pattern taken from the same input.
// Invariants: never crashes; an Ok record has an id of 1..32 letters/digits; a record not
// starting with "v" is never taken for MTA-STS; one record alone gives its id exactly when Ok.
#include "FuzzAssert.h"
#include "mtasts/Policy.h"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

using namespace postern::mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string in(reinterpret_cast<const char*>(data), size);
    TxtRecord r = parseTxtRecord(in);
    if (r.kind == TxtKind::Ok) {
        FUZZ_CHECK(!r.id.empty() && r.id.size() <= 32);
        for (char c : r.id) FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(c)));
    }
    if (in.empty() || in[0] != 'v') FUZZ_CHECK(r.kind == TxtKind::NotSts);
    auto id = stsIdFromRecords({in});
    FUZZ_CHECK(id.has_value() == (r.kind == TxtKind::Ok));
    if (id) FUZZ_CHECK(*id == r.id);
    // Two copies of one MTA-STS record: not exactly one, so no policy.
    if (r.kind != TxtKind::NotSts) FUZZ_CHECK(!stsIdFromRecords({in, in}).has_value());
    auto nl = in.find('\n');
    if (nl != std::string::npos) {
        std::string pattern = in.substr(0, nl), host = in.substr(nl + 1);
        bool m = mxMatches(pattern, host);
        if (m && pattern.rfind("*.", 0) != 0) FUZZ_CHECK(mxMatches(host, pattern));
    }
    return 0;
}
