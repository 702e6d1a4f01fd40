// Injects DSNs (Dsn.h) for the envelope sender of a queued message through the
// MessageSink, like any accepted mail: a local sender gets it in the Maildir, a remote
// sender gets it queued (from the null sender <>, RFC 5321 4.5.5, so it never bounces).
#pragma once

#include "core/MessageSink.h"
#include "core/UserDirectory.h"
#include "delivery/Dsn.h"
#include "queue/QueueEnvelope.h"

#include <string>

namespace postern::delivery {

// Thread-safe (the sink and directory are). Both references outlive this object.
class BounceSender {
public:
    // returnLimit: the largest original a report returns whole for RET=FULL
    // (delivery.bounce_size_limit, as Postfix's bounce_size_limit); a larger one is reported
    // with its header section only (RFC 3461 4.3 lets the MTA return less than asked).
    BounceSender(core::MessageSink& sink, core::UserDirectory& directory, std::string hostname,
                 std::size_t returnLimit = 50000)
        : sink_(sink), directory_(directory), hostname_(std::move(hostname)), returnLimit_(returnLimit) {}
    virtual ~BounceSender() = default;

    enum class Result {
        Sent,        // durably stored / queued
        Dropped,     // nobody to tell: null sender (never a bounce for a bounce) or the
                     // local sender no longer exists (logged)
        TempFail,    // directory or sink could not answer now: keep the recipients, retry
    };

    // `originalData`: path of the original message (its header section is attached, or
    // the whole message for RET=FULL). ENVID and each recipient's ORCPT come from the
    // original's DSN request (the caller filters the recipients by NOTIFY). `content`: the
    // message already read into memory (then the path is not read): a "relayed" report is
    // sent after the last recipient's record has removed the file.
    virtual Result send(const queue::QueueEnvelope& original, const std::string& originalData, DsnAction action,
                        const std::vector<DsnRecipient>& recipients,
                        std::chrono::system_clock::time_point willRetryUntil, const std::string* content = nullptr);

    // SpoolSink's delivered hook: the "delivered" report (RFC 3461 NOTIFY=SUCCESS) for the
    // local recipients of `envelope` that asked for it, stored at `queueId`.
    Result sendDelivered(const core::Envelope& envelope, const std::string& queueId, const std::string& dataPath);

private:
    core::MessageSink& sink_;
    core::UserDirectory& directory_;
    std::string hostname_;
    std::size_t returnLimit_;
};

}  // namespace postern::delivery
