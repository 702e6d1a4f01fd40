// Fuzz target: SMTP command line parser (smtp::parseCommand), with and without SMTPUTF8.
// Invariants: never crashes; a line with NUL, CR or LF or over the AUTH line limit is never
// ok; an ok MAIL/RCPT has an ok path whose address() parses again to the same address; an
// ok BDAT's chunk-size and LAST, written out again, parse to the same values.
#include "FuzzAssert.h"
#include "smtpproto/SmtpCommand.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::smtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    // First byte: options; the rest is the line (without CRLF, as the line channel gives it).
    CommandOptions options;
    options.smtpUtf8 = (data[0] & 1) != 0;
    if (data[0] & 2)
        options.maxLineLength = 64;  // exercise the limit paths with short inputs
    std::string_view line(reinterpret_cast<const char*>(data + 1), size - 1);

    Command cmd = parseCommand(line, options);
    (void)verbName(cmd.verb);
    Reply reply = cmd.errorReply();
    (void)reply;

    if (line.find_first_of(std::string_view("\0\r\n", 3)) != std::string_view::npos)
        FUZZ_CHECK(!cmd.ok());
    if (line.size() > options.maxAuthLineLength)
        FUZZ_CHECK(!cmd.ok());
    if (cmd.ok() && (cmd.verb == Verb::Mail || cmd.verb == Verb::Rcpt)) {
        FUZZ_CHECK(cmd.path.ok);
        if (!cmd.path.isNull && !cmd.path.isPostmaster) {
            // What we would write to the queue must read back as the same address.
            PathOptions po;
            po.allowUtf8 = options.smtpUtf8;
            std::string again = "<" + cmd.path.address() + ">";
            ParsedPath p = parsePath(again, PathKind::Forward, po);
            FUZZ_CHECK(p.ok);
            FUZZ_CHECK(p.localPart == cmd.path.localPart);
            FUZZ_CHECK(p.domain == cmd.path.domain);
        }
    }
    if (cmd.ok() && cmd.verb == Verb::Bdat) {
        Command again = parseCommand("BDAT " + std::to_string(cmd.chunkSize) + (cmd.lastChunk ? " LAST" : ""));
        FUZZ_CHECK(again.ok());
        FUZZ_CHECK(again.chunkSize == cmd.chunkSize);
        FUZZ_CHECK(again.lastChunk == cmd.lastChunk);
    }
    if (!cmd.ok() && cmd.verb == Verb::Bdat)
        FUZZ_CHECK(cmd.chunkSize == 0 || cmd.error == CommandError::BadArguments);
    return 0;
}
