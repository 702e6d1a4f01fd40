#include "delivery/BounceSender.h"

#include "core/EventLine.h"
#include "queue/FileOps.h"
#include "core/Utf8.h"

#include <Poco/Logger.h>
#include <Poco/Net/IPAddress.h>

#include <algorithm>
#include <cctype>
#include <random>

namespace postern::delivery {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.delivery"); }

}  // namespace

BounceSender::Result BounceSender::send(const queue::QueueEnvelope& original, const std::string& originalData,
                                        DsnAction action, const std::vector<DsnRecipient>& recipients,
                                        std::chrono::system_clock::time_point willRetryUntil,
                                        const std::string* content) {
    const char* kind = action == DsnAction::Failed    ? "bounce"
                       : action == DsnAction::Delayed ? "delay"
                       : action == DsnAction::Relayed ? "relayed"
                                                      : "delivered";
    // RFC 5321 4.5.5 / RFC 3464: notifications are about mail from a real sender only;
    // a DSN (null sender) that fails is dropped, never answered with another DSN.
    if (original.sender.empty()) {
        logger().notice(
            core::EventLine::inSession(original.id, "dsn.drop").add("kind", kind).add("reason", "null_sender").str());
        return Result::Dropped;
    }
    core::Envelope env;
    env.sessionId = original.id;
    env.sender = "";
    // RFC 8689 5: a report about REQUIRETLS mail carries its header section (or all of it,
    // RET=FULL) and must be protected as the message was: it is relayed with REQUIRETLS too.
    env.requireTls = original.requireTls;
    env.client.ip = Poco::Net::IPAddress("127.0.0.1");
    env.heloName = hostname_;
    // A failure report takes the place of the message it reports on: a full queue admits it,
    // or the message could never leave (every retry would fail to queue its bounce).
    env.failureReport = action == DsnAction::Failed;
    auto at = original.sender.rfind('@');
    if (at == std::string::npos || at + 1 == original.sender.size()) {
        logger().warning(core::EventLine::inSession(original.id, "dsn.drop")
                             .add("kind", kind)
                             .address("to", original.sender)
                             .add("reason", "no_domain")
                             .str());
        return Result::Dropped;
    }
    std::string domain = core::asciiLower(original.sender.substr(at + 1));
    std::string address = original.sender.substr(0, at + 1) + domain;
    switch (directory_.isLocalDomain(domain)) {
    case core::Answer::TempFail: return Result::TempFail;
    case core::Answer::No: env.remoteRecipients.push_back(original.sender); break;
    case core::Answer::Yes: {
        core::RecipientLookup l = directory_.lookupRecipient(address);
        if (l.answer == core::Answer::TempFail) return Result::TempFail;
        if (l.answer == core::Answer::No || (l.mailboxes.empty() && l.forwards.empty())) {
            logger().warning(core::EventLine::inSession(original.id, "dsn.drop")
                                 .add("kind", kind)
                                 .address("to", original.sender)
                                 .add("reason", "unknown_local_sender")
                                 .str());
            return Result::Dropped;
        }
        env.localMailboxes = l.mailboxes;
        env.remoteRecipients = l.forwards;
        break;
    }
    }

    // Only what the report can carry is read: the header section (at most 64 KiB) and, for
    // RET=FULL, a message of at most returnLimit_ octets; never a 25 MB original whole.
    constexpr std::size_t HeaderCap = 64 * 1024;
    // RFC 8689 5: a report about REQUIRETLS mail behaves as if RET=HDRS was given.
    const bool full = original.dsn.ret == core::DsnRet::Full && !original.requireTls;
    const std::size_t want = full ? std::max(HeaderCap, returnLimit_) : HeaderCap;
    std::string data;
    bool truncated = false;
    if (content) {
        truncated = content->size() > want;
        data = content->substr(0, want);
    } else {
        queue::readFileHead(originalData, want, data, truncated);  // a missing file only loses the attached headers
    }
    DsnInput in;
    in.action = action;
    in.reportingMta = hostname_;
    in.queueId = original.id;
    in.originalSender = original.sender;
    in.arrival = original.arrival;
    in.now = std::chrono::system_clock::now();
    in.willRetryUntil = willRetryUntil;
    in.recipients = recipients;
    for (auto& r : in.recipients) {
        core::RecipientDsn d = original.dsnFor(r.address);
        if (r.originalRecipient.empty() && !d.orcptType.empty()) r.originalRecipient = d.orcptType + ";" + d.orcpt;
    }
    in.envelopeId = original.dsn.envid;
    in.originalHeaders = headerSection(data);
    // RFC 3461 4.3: RET=FULL returns the whole message; HDRS and no RET the header section.
    // A message over delivery.bounce_size_limit: its header section only, so the report
    // fits the sender's server (a report too big for it is lost: its own failure is never
    // reported, RFC 5321 4.5.5).
    const bool fits = !truncated && data.size() <= returnLimit_;
    if (full && !data.empty() && fits) in.originalMessage = data;
    if (full && !fits)
        logger().information(core::EventLine::inSession(original.id, "dsn.headers_only")
                                 .add("kind", kind)
                                 .add("reason", "bounce_size_limit")
                                 .add("limit", returnLimit_)
                                 .str());
    const std::string& attached = in.originalMessage.empty() ? in.originalHeaders : in.originalMessage;
    thread_local std::mt19937_64 rng{std::random_device{}()};
    do {
        in.boundary = dsnBoundary(original.id, rng(), hostname_);
    } while (attached.find(in.boundary) != std::string::npos);
    std::string dsn = formatDsn(in);

    core::SinkStatus status = core::SinkStatus::TempFail;
    core::MessageWriterPtr writer = sink_.open(env, status);
    if (!writer) return Result::TempFail;
    if (!writer->write(dsn.data(), dsn.size())) return Result::TempFail;
    core::SinkResult r = writer->commit();
    if (r.status != core::SinkStatus::Ok) return Result::TempFail;
    logger().information(core::EventLine::inSession(original.id, "dsn.sent")
                             .add("kind", kind)
                             .address("to", original.sender)
                             .add("id", r.queueId)
                             .add("recipients", recipients.size())
                             .str());
    return Result::Sent;
}

BounceSender::Result BounceSender::sendDelivered(const core::Envelope& envelope, const std::string& queueId,
                                                 const std::string& dataPath) {
    queue::QueueEnvelope original;
    original.id = queueId;
    original.arrival = std::chrono::system_clock::now();
    original.sender = envelope.sender;
    original.sessionId = envelope.sessionId;
    original.dsn = envelope.dsn;
    original.requireTls = envelope.requireTls;  // RFC 8689 5, as for every report (send())
    std::vector<DsnRecipient> recipients;
    for (const auto& [address, d] : envelope.localSuccessDsn) {
        original.recipients.push_back(address);
        original.recipientDsn[address] = d;
        DsnRecipient r;
        r.address = address;
        r.status = "2.0.0";
        r.diagnostic = "delivered to mailbox";
        r.diagnosticIsSmtp = false;
        recipients.push_back(std::move(r));
    }
    if (recipients.empty()) return Result::Dropped;
    Result r = send(original, dataPath, DsnAction::Delivered, recipients, original.arrival);
    if (r == Result::TempFail)
        logger().error(core::EventLine::inSession(queueId, "dsn.fail")
                           .add("kind", "delivered")
                           .address("to", envelope.sender)
                           .text("note", "the message is delivered; its success report is lost")
                           .str());
    return r;
}

}  // namespace postern::delivery
