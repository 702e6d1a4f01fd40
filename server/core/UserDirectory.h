// Port: who lives here? Local domains, mailboxes and aliases for RCPT validation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace postern::core {

enum class Answer { Yes, No, TempFail };

struct RecipientLookup {
    Answer answer = Answer::TempFail;   // Yes: deliverable; No: 550 5.1.1; TempFail: 451 4.3.0
    std::vector<std::string> mailboxes; // local mailbox locations to deliver to (aliases expanded)
    std::vector<std::string> forwards;  // remote addresses an alias points to (go to the queue)
    // Mailbox location -> the quota of its user in bytes, for the mailboxes that have one
    // (the backend's quota, e.g. PostgreSQL's users.quota_bytes; 0 or none = no quota).
    std::map<std::string, std::uint64_t> quotas;
};

// Thread-safe; blocking.
class UserDirectory {
public:
    virtual ~UserDirectory() = default;
    // Domain part, lower-cased, without trailing dot.
    virtual Answer isLocalDomain(const std::string& domain) = 0;
    // Full address ("local@domain", domain lower-cased) in a local domain.
    virtual RecipientLookup lookupRecipient(const std::string& address) = 0;
};

}  // namespace postern::core
