// What a mailbox holds, for quotas: the policy asks, the store answers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace postern::core {

// Thread-safe; blocking (reads directories).
class MailboxUsage {
public:
    virtual ~MailboxUsage() = default;
    // Bytes of the messages in the mailbox at `location` (as in RecipientLookup::mailboxes);
    // 0 when it does not exist yet. nullopt: it cannot be told (an I/O error, logged).
    virtual std::optional<std::uint64_t> usedBytes(const std::string& location) const = 0;
};

}  // namespace postern::core
