// Fuzz target: dovecot-uidlist files (store/DovecotUidlist.h), read from a user's Maildir
// when store.dovecot_uidlist is on. Invariants: never crashes; every UIDL is valid for POP3
// (RFC 1939 7: 1..70 octets in 0x21..0x7E); every base name is non-empty and has no ':'.
#include "FuzzAssert.h"
#include "store/DovecotUidlist.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const auto& [base, uidl] : postern::store::dovecotUidls(text)) {
        FUZZ_CHECK(!base.empty() && base.find(':') == std::string::npos);
        FUZZ_CHECK(!uidl.empty() && uidl.size() <= 70);
        for (char c : uidl) FUZZ_CHECK(c >= 0x21 && c <= 0x7e);
    }
    return 0;
}
