// Strict base64 (RFC 4648 4) for SASL exchanges: anything outside the alphabet,
// bad padding or a wrong length is an error (SMTP 501 5.5.2, POP3 -ERR).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::sasl {

std::optional<std::string> decodeBase64(std::string_view text);
std::string encodeBase64(std::string_view data);

}  // namespace postern::sasl
