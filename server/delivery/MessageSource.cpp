#include "delivery/MessageSource.h"

#include "delivery/SmtpClient.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::delivery {

bool loadMessage(const std::string& path, std::shared_ptr<const std::string>& content, std::uint64_t& size) {
    content.reset();
    size = 0;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    struct stat st{};
    bool ok = ::fstat(fd, &st) == 0;
    if (ok) size = static_cast<std::uint64_t>(st.st_size);
    if (ok && size <= InMemoryLimit) {
        // Queue files never change once written: `size` bytes are the message (a file that
        // came up short is taken as read).
        auto text = std::make_shared<std::string>(static_cast<std::size_t>(size), '\0');
        std::size_t got = 0;
        while (got < text->size()) {
            ssize_t n = ::read(fd, text->data() + got, text->size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                ok = false;
                break;
            }
            if (n == 0) break;
            got += static_cast<std::size_t>(n);
        }
        if (ok) {
            text->resize(got);
            size = got;
            content = std::move(text);
        }
    }
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
}

MessageSource::MessageSource(const MessageData& message) {
    if (message.content) memory_ = message.content.get();
    else fd_ = ::open(message.path.c_str(), O_RDONLY | O_CLOEXEC);
}

MessageSource::~MessageSource() {
    if (fd_ >= 0) ::close(fd_);
}

ssize_t MessageSource::read(char* buf, std::size_t n) {
    if (memory_) {
        const std::size_t k = std::min(n, memory_->size() - offset_);
        std::memcpy(buf, memory_->data() + offset_, k);
        offset_ += k;
        return static_cast<ssize_t>(k);
    }
    if (fd_ < 0) return -1;
    for (;;) {
        ssize_t r = ::read(fd_, buf, n);
        if (r < 0 && errno == EINTR) continue;
        return r;
    }
}

}  // namespace postern::delivery
