// Fuzz target: the policy delegation response (policyd::responseLength, parseResponse,
// interpretAction) - bytes from a policy server, untrusted. Invariants: never crashes;
// a framed response is within the input and ends in LF; a parsed action has no LF; a
// mapped refusal has a 4xx/5xx code (never 421/521) and a text without CR/LF; a PREPEND
// header is one line with a colon; and the input as a request value cannot break framing.
#include "FuzzAssert.h"
#include "policyd/PolicyProtocol.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::policyd;
using Kind = postern::core::PolicyDecision::Kind;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::size_t len = responseLength(in);
    FUZZ_CHECK(len <= size);
    if (len > 0) FUZZ_CHECK(in[len - 1] == '\n');
    Response r = parseResponse(len ? in.substr(0, len) : in);
    FUZZ_CHECK(r.ok == r.error.empty());
    FUZZ_CHECK(r.action.find('\n') == std::string::npos);
    ActionResult a = interpretAction(r.ok ? std::string_view(r.action) : in);
    const auto& d = a.decision;
    FUZZ_CHECK(d.action.find_first_of("\r\n") == std::string::npos);
    if (a.status != ActionStatus::Known) FUZZ_CHECK(d.kind == Kind::Continue);
    if (d.kind == Kind::Refuse) {
        FUZZ_CHECK(d.code >= 400 && d.code <= 599 && d.code != 421 && d.code != 521);
        FUZZ_CHECK(d.enhanced >= 0 && d.enhanced % 100 < 100);
        FUZZ_CHECK(!d.text.empty() && d.text.find_first_of("\r\n") == std::string::npos);
    }
    if (d.kind == Kind::Prepend)
        FUZZ_CHECK(d.header.find(':') != std::string::npos && d.header.find_first_of("\r\n") == std::string::npos);
    std::string req = formatRequest({{"helo_name", std::string(in)}});
    FUZZ_CHECK(req.size() >= 2 && req.compare(req.size() - 2, 2, "\n\n") == 0);
    FUZZ_CHECK(responseLength(req) == req.size());
    return 0;
}
