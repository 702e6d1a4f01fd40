#include "core/Idna.h"

#include "core/Utf8.h"

#include <idn2.h>

#include <cstdlib>
#include <memory>

namespace postern::core {

namespace {

struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};

}  // namespace

bool hasALabel(std::string_view domain) {
    std::size_t start = 0;
    while (start <= domain.size()) {
        std::size_t dot = domain.find('.', start);
        std::string_view label = domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.size() >= 4 && asciiLower(label.substr(0, 4)) == "xn--") return true;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return false;
}

namespace {

// libidn2's lookup (UTS #46 non-transitional mapping, then the IDNA2008 rules), lower-cased.
std::optional<std::string> lookup(const std::string& input) {
    char* raw = nullptr;
    const int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(input.c_str()), reinterpret_cast<uint8_t**>(&raw),
                                  IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
    std::unique_ptr<char, FreeDeleter> out(raw);
    if (rc != IDN2_OK || !out) return std::nullopt;
    std::string result = asciiLower(out.get());
    if (!isAscii(result)) return std::nullopt;
    return result;
}

std::optional<std::string> toUnicode(const std::string& ascii) {
    char* raw = nullptr;
    const int rc = idn2_to_unicode_8z8z(ascii.c_str(), &raw, 0);
    std::unique_ptr<char, FreeDeleter> out(raw);
    if (rc != IDN2_OK || !out) return std::nullopt;
    return std::string(out.get());
}

bool hasControl(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
    return false;
}

}  // namespace

std::optional<std::string> domainToAscii(std::string_view domain) {
    if (domain.empty() || hasControl(domain)) return std::nullopt;
    const bool ascii = isAscii(domain);
    if (ascii && !hasALabel(domain)) return asciiLower(domain);
    if (!ascii && !isValidUtf8(domain)) return std::nullopt;
    std::optional<std::string> result = lookup(std::string(domain));
    // UTS #46 maps some code points to nothing (U+200B): a label must not vanish.
    if (!result || result->empty() || result->front() == '.' || result->find("..") != std::string::npos)
        return std::nullopt;
    // An A-label is valid only if it is what its own U-label encodes to (RFC 5891 5.4):
    // libidn2 lets some through that decode to mapped or differently placed code points.
    if (hasALabel(*result)) {
        std::optional<std::string> u = toUnicode(*result);
        if (!u || hasControl(*u)) return std::nullopt;
        std::optional<std::string> again = lookup(*u);
        if (!again || *again != *result) return std::nullopt;
    }
    return result;
}

std::optional<std::string> domainToUnicode(std::string_view domain) {
    if (!hasALabel(domain) || !isAscii(domain)) return std::nullopt;
    auto ascii = domainToAscii(domain);  // refuses bad A-labels first
    if (!ascii) return std::nullopt;
    return toUnicode(*ascii);
}

std::string normalizeAddressDomain(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return std::string(address);
    auto domain = domainToAscii(address.substr(at + 1));
    if (!domain) return std::string(address);
    return std::string(address.substr(0, at + 1)) + *domain;
}

std::string canonicalLogin(std::string_view login) { return asciiLower(normalizeAddressDomain(login)); }

}  // namespace postern::core
