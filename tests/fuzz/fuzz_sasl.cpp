// Fuzz target: SASL decoding shared by SMTP AUTH and POP3 AUTH: strict base64
// (sasl::decodeBase64) and the PLAIN/LOGIN exchanges (sasl::SaslExchange). Invariants: never
// crashes; encode/decode round-trips; every challenge is valid base64; an exchange ends
// within a few steps; Done never carries NUL in user or password for PLAIN (RFC 4616).
#include "FuzzAssert.h"
#include "sasl/Base64.h"
#include "sasl/SaslExchange.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace postern::sasl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    const std::uint8_t mode = data[0];
    std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

    // Base64 both ways on the raw text.
    std::optional<std::string> decoded = decodeBase64(rest);
    if (decoded) {
        auto again = decodeBase64(encodeBase64(*decoded));
        FUZZ_CHECK(again && *again == *decoded);
    }
    auto roundTrip = decodeBase64(encodeBase64(rest));
    FUZZ_CHECK(roundTrip && *roundTrip == rest);

    // An exchange: lines separated by '\n'; mode bit 0 picks the mechanism, bit 1 whether
    // the first line is an initial response, bit 2 a mechanism name parse of the first line.
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= rest.size(); ++i) {
        if (i == rest.size() || rest[i] == '\n') {
            lines.push_back(rest.substr(start, i - start));
            start = i + 1;
        }
    }
    if (mode & 4)
        (void)parseMechanism(lines.front());
    const Mechanism mech = (mode & 1) ? Mechanism::Login : Mechanism::Plain;
    SaslExchange ex(mech);
    std::size_t next = 0;
    Step step = (mode & 2) ? ex.start(lines[next++]) : ex.start(std::nullopt);
    int steps = 0;
    while (step.kind == StepKind::Challenge && next < lines.size()) {
        auto challenge = decodeBase64(step.challenge);
        FUZZ_CHECK(challenge.has_value());
        step = ex.respond(lines[next++]);
        FUZZ_CHECK(++steps <= 3);  // PLAIN: one response; LOGIN: user, password
    }
    if (step.kind == StepKind::Done && mech == Mechanism::Plain) {
        FUZZ_CHECK(ex.credentials().user.find('\0') == std::string::npos);
        FUZZ_CHECK(ex.credentials().password.find('\0') == std::string::npos);
    }
    return 0;
}
