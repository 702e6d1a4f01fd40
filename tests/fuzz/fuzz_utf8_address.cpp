// Fuzz target: UTF-8 validation (core/Utf8) and IDNA normalisation (core/Idna) as the SMTP
// path parser uses them for SMTPUTF8 addresses. Invariants: never crashes; isValidUtf8 agrees
// with an independent decoder (code point ranges, no overlongs, no surrogates); a domain's
// A-label form is lower-case ASCII and a fixed point; its U-label form maps back to it; a
// path with the text as local part or domain parses only if the text is valid UTF-8, and
// then its domain is ASCII.
#include "FuzzAssert.h"
#include "core/Idna.h"
#include "core/Utf8.h"
#include "smtpproto/SmtpAddress.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

using namespace postern;

namespace {

// Decoder written from RFC 3629 3 (code point value checks), not from its table.
bool referenceValid(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        unsigned char c = s[i];
        std::size_t n;
        std::uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07;
        else return false;
        if (i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k) {
            unsigned char cc = s[i + k];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        const std::uint32_t min = n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    const bool valid = core::isValidUtf8(text);
    FUZZ_CHECK(valid == referenceValid(text));
    const std::string lowered = core::asciiLower(text);
    FUZZ_CHECK(lowered.size() == text.size());
    FUZZ_CHECK(core::isValidUtf8(lowered) == valid);

    if (size <= 300) {
        if (auto a = core::domainToAscii(text)) {
            FUZZ_CHECK(valid);
            FUZZ_CHECK(core::isAscii(*a));
            for (char c : *a) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
            auto again = core::domainToAscii(*a);
            FUZZ_CHECK(again && *again == *a);
            if (auto u = core::domainToUnicode(*a)) {
                auto back = core::domainToAscii(*u);
                FUZZ_CHECK(back && *back == *a);
            }
        }
        smtp::PathOptions po;
        po.allowUtf8 = true;
        smtp::ParsedPath local = smtp::parsePath("<" + std::string(text) + "@example.org>", smtp::PathKind::Forward, po);
        if (local.ok) FUZZ_CHECK(core::isValidUtf8(local.localPart));
        smtp::ParsedPath domain = smtp::parsePath("<u@" + std::string(text) + ">", smtp::PathKind::Forward, po);
        if (domain.ok) {
            FUZZ_CHECK(valid);
            FUZZ_CHECK(core::isAscii(domain.domain));
            if (!core::isAscii(text) && !domain.isAddressLiteral) FUZZ_CHECK(domain.hasUtf8);
        }
    }
    return 0;
}
