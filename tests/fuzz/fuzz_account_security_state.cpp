// Fuzz target: a single node's account security state file (abuse/AccountSecurityStateFile),
// read back from disk by posternd at start and by posternctl user logins - a file that may be
// damaged. Invariants: never crashes; what parses formats back to text that parses to the
// same state, and formatting is stable (format(parse(format(x))) == format(x)).
#include "FuzzAssert.h"
#include "abuse/AccountSecurityStateFile.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::abuse;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    AccountSecurityState state;
    try {
        state = parseAccountSecurityState(in);
    } catch (const StateFileError&) {
        return 0;
    }
    const std::string text = formatAccountSecurityState(state);
    AccountSecurityState again = parseAccountSecurityState(text);  // must not throw
    FUZZ_CHECK(again == state);
    FUZZ_CHECK(formatAccountSecurityState(again) == text);
    return 0;
}
