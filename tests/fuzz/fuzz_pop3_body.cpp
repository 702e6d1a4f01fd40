// Fuzz target: RETR and TOP bodies (pop3/Pop3Body.h), built block by block from a stored
// message another program may have written. Input: one octet for the block size (1..64), one
// for TOP's line count (255: RETR), then the message. Invariants: never crashes; the reply
// ends with the terminator and has no line "." before it; removing the stuffing gives back
// the message (RETR; with a CRLF added if it lacked one) or a prefix of it (TOP).
#include "FuzzAssert.h"
#include "pop3/Pop3Body.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace {
class Blocks : public postern::core::MessageStream {
public:
    Blocks(std::string bytes, std::size_t block) : bytes_(std::move(bytes)), block_(block) {}
    bool next(std::string& out) override {
        out = bytes_.substr(pos_, block_);
        pos_ += out.size();
        return true;
    }

private:
    std::string bytes_;
    std::size_t block_;
    std::size_t pos_ = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::size_t block = 1 + data[0] % 64;
    std::optional<std::uint32_t> top;
    if (data[1] != 255) top = data[1];
    const std::string message(reinterpret_cast<const char*>(data) + 2, size - 2);
    postern::pop3::Pop3Body body(std::make_unique<Blocks>(message, block), top);
    std::string reply, part;
    for (;;) {
        const auto st = body.next(part);
        FUZZ_CHECK(st != postern::pop3::Pop3Body::Status::Failed);
        reply += part;
        if (st == postern::pop3::Pop3Body::Status::Done) break;
    }
    FUZZ_CHECK(reply == ".\r\n" || reply.ends_with("\r\n.\r\n"));
    const std::string content = reply.substr(0, reply.size() - 3);
    FUZZ_CHECK(content.find("\n.\r\n") == std::string::npos && !content.starts_with(".\r\n"));
    std::string unstuffed;
    bool lineStart = true;
    for (std::size_t i = 0; i < content.size(); ++i) {
        if (lineStart && content[i] == '.') {
            FUZZ_CHECK(i + 1 < content.size() && content[i + 1] == '.');
            ++i;
        }
        unstuffed += content[i];
        lineStart = content[i] == '\n';
    }
    std::string whole = message;
    if (!whole.empty() && !whole.ends_with("\r\n")) whole += "\r\n";
    if (top) {
        // A prefix of the message, or all of it with the added CRLF.
        FUZZ_CHECK(whole.compare(0, unstuffed.size(), unstuffed) == 0 ||
                   (unstuffed.ends_with("\r\n") &&
                    message.compare(0, unstuffed.size() - 2, unstuffed, 0, unstuffed.size() - 2) == 0));
    } else {
        FUZZ_CHECK(unstuffed == whole);
    }
    return 0;
}
