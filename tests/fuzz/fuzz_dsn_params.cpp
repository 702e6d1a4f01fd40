// Fuzz target: DSN parameters of MAIL/RCPT (RFC 3461) through the command parser
// ("MAIL FROM:<a@b.example> " / "RCPT TO:<a@b.example> " + input) and the parameter
// functions directly. Invariants: never crashes; an accepted NOTIFY is NEVER alone or a
// non-empty set of SUCCESS/FAILURE/DELAY that formats and parses back to itself; an
// accepted ENVID came from at most 100 characters; an accepted ORCPT has an address type
// and an address; the queue's encoding of the values decodes back to them.
#include "FuzzAssert.h"
#include "smtpproto/DsnParams.h"
#include "smtpproto/SmtpCommand.h"
#include "smtpproto/Xtext.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

using namespace postern;
using namespace postern::smtp;

namespace {

void checkRecipient(const core::RecipientDsn& d) {
    if (d.notify != 0) {
        FUZZ_CHECK(d.notify == core::notify::Never || (d.notify & core::notify::Never) == 0);
        FUZZ_CHECK(d.notify < 16);
        FUZZ_CHECK(parseNotify(formatNotify(d.notify)) == d.notify);
    }
    if (!d.orcptType.empty()) {
        FUZZ_CHECK(!d.orcpt.empty());
        FUZZ_CHECK(*decodeXtext(encodeXtext(d.orcpt)) == d.orcpt);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    Command m = parseCommand("MAIL FROM:<a@b.example> " + std::string(text));
    if (m.ok()) {
        FUZZ_CHECK(m.dsn.envid.size() <= MaxEnvidLength);
        FUZZ_CHECK(*decodeXtext(encodeXtext(m.dsn.envid)) == m.dsn.envid);
    }
    Command r = parseCommand("RCPT TO:<a@b.example> " + std::string(text));
    if (r.ok()) checkRecipient(r.rcptDsn);

    // The functions alone: key up to the first '=', value after it.
    auto eq = text.find('=');
    std::string_view key = text.substr(0, eq);
    std::optional<std::string_view> value;
    if (eq != std::string_view::npos) value = text.substr(eq + 1);
    std::string why;
    core::MessageDsn md;
    if (parseMailDsnParam(key, value, md, why) == DsnParamResult::Ok) {
        FUZZ_CHECK(md.ret != core::DsnRet::Unspecified || !md.envid.empty());
        FUZZ_CHECK(md.envid.empty() || (value && value->size() <= MaxEnvidLength));
    }
    core::RecipientDsn rd;
    if (parseRcptDsnParam(key, value, rd, why) == DsnParamResult::Ok) {
        FUZZ_CHECK(!rd.empty());
        checkRecipient(rd);
    }
    return 0;
}
