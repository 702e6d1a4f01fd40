// Fuzz target: POP3 command parser (pop3::parsePop3Command). Invariants: never crashes;
// over-long lines and lines with NUL, CR or LF are errors; every error has a description;
// message numbers are 1-based; commands that need a number have one; USER and PASS have an
// argument, a bare AUTH no initial response.
#include "FuzzAssert.h"
#include "pop3/Pop3Command.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace postern::pop3;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view line(reinterpret_cast<const char*>(data), size);
    Pop3ParseResult r = parsePop3Command(line);
    FUZZ_CHECK(describe(r.error) != nullptr);
    if (line.size() > MaxCommandLine)
        FUZZ_CHECK(r.error != Pop3ParseError::None);
    if (line.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos)
        FUZZ_CHECK(r.error != Pop3ParseError::None);
    if (r.error == Pop3ParseError::None) {
        const Pop3Command& c = r.command;
        if (c.message)
            FUZZ_CHECK(*c.message >= 1);
        if (c.verb == Pop3Verb::Retr || c.verb == Pop3Verb::Dele || c.verb == Pop3Verb::Top)
            FUZZ_CHECK(c.message.has_value());
        if (c.verb == Pop3Verb::User || c.verb == Pop3Verb::Pass)
            FUZZ_CHECK(!c.argument.empty());
        // AUTH names a mechanism, or nothing at all (a bare AUTH: the mechanism list) and
        // then has no initial response either.
        if (c.verb == Pop3Verb::Auth && c.argument.empty())
            FUZZ_CHECK(!c.initialResponse.has_value());
    }
    return 0;
}
