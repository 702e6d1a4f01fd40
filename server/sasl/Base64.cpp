#include "sasl/Base64.h"

#include <Poco/Base64Decoder.h>
#include <Poco/Base64Encoder.h>

#include <sstream>

namespace postern::sasl {

namespace {
bool isAlphabet(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}
}  // namespace

std::optional<std::string> decodeBase64(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '=') {
            // Padding only in the last two positions, and nothing after it but padding.
            if (i + 2 < text.size()) return std::nullopt;
            ++pad;
        } else if (pad != 0 || !isAlphabet(c)) {
            return std::nullopt;
        }
    }
    // Validated above, so the library decoder only sees well-formed input.
    std::istringstream in{std::string(text)};
    Poco::Base64Decoder decoder(in);
    std::string out((std::istreambuf_iterator<char>(decoder)), std::istreambuf_iterator<char>());
    return out;
}

std::string encodeBase64(std::string_view data) {
    std::ostringstream out;
    Poco::Base64Encoder encoder(out);
    encoder.rdbuf()->setLineLength(0);
    encoder.write(data.data(), static_cast<std::streamsize>(data.size()));
    encoder.close();
    return out.str();
}

}  // namespace postern::sasl
