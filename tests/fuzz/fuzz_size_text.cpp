// Fuzz target: sizes as text (plugins/api/SizeText.h), as a user backend returns a quota
// (PostgreSQL's quota column, a passwd-file's quota= field) and as the configuration gives
// sizes. Invariants: never crashes; a parsed size printed as plain bytes parses back to the
// same value; a size with a unit is that unit's multiple of its number; a quota is never 0
// (0 means none) and a text that is a size with a '-' in front is none, not an error.
#include "FuzzAssert.h"
#include "api/SizeText.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::plugins::api;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    SizeError why = SizeError::None;
    if (auto n = parseSizeText(text, &why)) {
        FUZZ_CHECK(why == SizeError::None);
        FUZZ_CHECK(parseSizeText(std::to_string(*n)) == n);
        if (*n % 1024 == 0) FUZZ_CHECK(parseSizeText(std::to_string(*n / 1024) + "K") == n);
    } else {
        FUZZ_CHECK(why != SizeError::None);
    }
    bool bad = false;
    auto quota = quotaBytesOf(text, &bad);
    if (quota) FUZZ_CHECK(*quota != 0 && !bad && parseSizeText(text) == quota);
    if (bad) FUZZ_CHECK(!quota);
    if (parseSizeText(text) && !text.empty()) {
        bool negBad = true;
        FUZZ_CHECK(!quotaBytesOf("-" + std::string(text), &negBad) && !negBad);
    }
    return 0;
}
