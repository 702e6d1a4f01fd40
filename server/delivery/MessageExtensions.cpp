#include "delivery/MessageExtensions.h"

#include "core/Text.h"
#include "core/Utf8.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace postern::delivery {

namespace {

constexpr std::size_t MaxHeaderBytes = 1024 * 1024;

}  // namespace

bool envelopeNeedsSmtpUtf8(std::string_view sender, const std::vector<std::string>& recipients) {
    if (!core::isAscii(sender)) return true;
    for (const auto& r : recipients)
        if (!core::isAscii(r)) return true;
    return false;
}

bool headerSaysTlsNotRequired(std::string_view text) {
    if (text.size() > MaxHeaderBytes) text = text.substr(0, MaxHeaderBytes);
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        std::size_t next = eol == std::string_view::npos ? text.size() : eol + 1;
        std::string_view line = text.substr(pos, next - pos);
        if (core::trimSpace(line).empty()) return false;  // end of the header section
        // An unfolded field: the first line plus its continuation lines (RFC 5322 2.2.3).
        while (next < text.size() && (text[next] == ' ' || text[next] == '\t')) {
            std::size_t e2 = text.find('\n', next);
            next = e2 == std::string_view::npos ? text.size() : e2 + 1;
        }
        std::string_view field = text.substr(pos, next - pos);
        auto colon = field.find(':');
        if (colon != std::string_view::npos &&
            core::asciiLower(core::trimSpace(field.substr(0, colon))) == "tls-required" &&
            core::asciiLower(core::trimSpace(field.substr(colon + 1))) == "no")
            return true;
        pos = next;
    }
    return false;
}

bool fileSaysTlsNotRequired(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::string text;
    char buf[16 * 1024];
    while (text.size() < MaxHeaderBytes) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.find("\r\n\r\n") != std::string::npos || text.find("\n\n") != std::string::npos) break;
    }
    ::close(fd);
    return headerSaysTlsNotRequired(text);
}

}  // namespace postern::delivery
