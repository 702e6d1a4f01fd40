#include "abuse/NameFold.h"

#include "core/Utf8.h"

#include <unicase.h>
#include <uninorm.h>

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace postern::abuse {

namespace {
struct Free {
    void operator()(std::uint8_t* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<std::uint8_t, Free>;

const std::uint8_t* bytes(std::string_view s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }
}  // namespace

std::string foldName(std::string_view utf8) {
    if (core::isAscii(utf8)) return core::asciiLower(utf8);
    if (!core::isValidUtf8(utf8)) return std::string(utf8);
    std::size_t decomposedLength = 0;
    Buffer decomposed(u8_normalize(UNINORM_NFKD, bytes(utf8), utf8.size(), nullptr, &decomposedLength));
    if (!decomposed) return std::string(utf8);
    std::size_t foldedLength = 0;
    Buffer folded(u8_casefold(decomposed.get(), decomposedLength, nullptr, UNINORM_NFKC, nullptr, &foldedLength));
    if (!folded) return std::string(utf8);
    return std::string(reinterpret_cast<const char*>(folded.get()), foldedLength);
}

}  // namespace postern::abuse
