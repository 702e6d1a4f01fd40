// Fuzz target: what a milter sends back (milter::PacketReader, parseReply, and the
// modification actions applied to a message) - bytes from a milter, untrusted.
// Invariants: never crashes; a packet is never longer than the input nor MaxPacket; a
// reply code handed to the session is 4xx/5xx with no bare CR/LF; an address or header
// name from a milter has no CR/LF; applying every parsed modification to a message keeps
// it splittable and the result of join(split(x)) stable.
#include "FuzzAssert.h"
#include "milter/MessageEdit.h"
#include "milter/MilterProtocol.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern::milter;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    PacketReader reader;
    // Fed in two pieces: framing must not depend on how the bytes arrive.
    reader.feed(in.data(), size / 2);
    reader.feed(in.data() + size / 2, size - size / 2);
    MessageParts parts = splitMessage("Subject: x\r\nFrom: a@example.org\r\n\r\nbody\r\n");
    postern::core::MilterMessage env;
    env.recipients = {"b@example.org"};
    bool bodyStarted = false;
    std::size_t total = 0;
    while (auto p = reader.next()) {
        total += p->size() + 4;
        FUZZ_CHECK(total <= size);
        FUZZ_CHECK(!p->empty() && p->size() <= MaxPacket);
        std::string error;
        auto r = parseReply(*p, error);
        FUZZ_CHECK(r.has_value() == error.empty());
        if (!r) continue;
        if (r->kind == Reply::Kind::ReplyCode) {
            FUZZ_CHECK(r->text[0] == '4' || r->text[0] == '5');
            for (std::size_t i = 0; i < r->text.size(); ++i)
                if (r->text[i] == '\r') FUZZ_CHECK(i + 1 < r->text.size() && r->text[i + 1] == '\n');
        }
        if (r->kind == Reply::Kind::AddRcpt || r->kind == Reply::Kind::DelRcpt || r->kind == Reply::Kind::ChgFrom)
            FUZZ_CHECK(r->text.find_first_of("\r\n<> ") == std::string::npos);
        if (!r->name.empty()) FUZZ_CHECK(r->name.find_first_of("\r\n: ") == std::string::npos);
        if (r->neededAction() != 0) applyModification(*r, parts, env, bodyStarted);
    }
    if (bodyStarted) parts.body = toCrlf(parts.body);
    std::string joined = joinMessage(parts);
    FUZZ_CHECK(joinMessage(splitMessage(joined)) == joined);
    return 0;
}
