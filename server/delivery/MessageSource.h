// The bytes of a queued message for one delivery attempt. A message up to InMemoryLimit is
// read once (one open, one read) into MessageData::content and every later pass (8-bit and
// binary checks, TLS-Required, DATA or BDAT) works on memory; a larger one is streamed from
// its file by each pass, as before. Four opens and seven reads per relayed message were one
// and two.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <sys/types.h>

namespace postern::delivery {

struct MessageData;

// Fixed, not a setting: only decides whether a message is held in memory for one attempt.
constexpr std::uint64_t InMemoryLimit = 1024 * 1024;

// Reads the file `path` into `content` if it is at most InMemoryLimit bytes; `size` gets its
// size either way. false (errno set) if it cannot be opened or read.
bool loadMessage(const std::string& path, std::shared_ptr<const std::string>& content, std::uint64_t& size);

// Sequential blocks of a message: from MessageData::content when loaded, else from the file.
class MessageSource {
public:
    explicit MessageSource(const MessageData& message);
    ~MessageSource();
    MessageSource(const MessageSource&) = delete;
    MessageSource& operator=(const MessageSource&) = delete;

    bool ok() const { return memory_ != nullptr || fd_ >= 0; }
    // Up to `n` bytes into `buf`: the count, 0 at the end, -1 on a read error.
    ssize_t read(char* buf, std::size_t n);

private:
    const std::string* memory_ = nullptr;
    std::size_t offset_ = 0;
    int fd_ = -1;
};

}  // namespace postern::delivery
