// The envelope of a queued message and its on-disk text format (one file per message,
// next to the data file; see OutboundQueue.h for the directory layout).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::queue {

// Envelope file format, version 1. UTF-8/ASCII text, LF line ends, one field per line:
// a keyword, one space, then the value up to the end of the line (the value may be empty
// and may contain spaces; it never contains CR, LF or NUL: format() refuses such values).
//
//   postern-queue 1                       first line: magic and format version
//   id 65f1c2a0001f3b9c                   queue id (16 lower-case hex digits)
//   arrival 1710342816                    Unix seconds when the message was accepted
//   sender bob@example.org                reverse-path; empty value = null sender <>
//   recipient alice@example.net           one line per forward-path, in order, at least one
//   client 192.0.2.7                      client IP (ClientAddress::host())
//   helo mail.example.org                 HELO/EHLO name (may be empty)
//   auth bob                              SMTP AUTH user; empty value = not authenticated
//   session 1f3a                          session id, to find the SMTP log lines
//   attempts 0                            delivery attempts made so far
//   next-attempt 0                        Unix seconds of the next attempt (0 = now)
//   last-error                            text of the last temporary failure (may be empty)
//   hold 1                                optional: posternctl queue hold; the runner skips it
//   warned 1                              optional: a "delayed" DSN was sent already
//   smtputf8 1                            optional: MAIL had SMTPUTF8 (RFC 6531)
//   requiretls 1                          optional: MAIL had REQUIRETLS (RFC 8689)
//
// Readers ignore unknown keywords (a later writer may add fields) but refuse a missing
// magic line, a different version, a missing id/arrival/sender or no recipient.
// A delivery worker updates attempts/next-attempt/last-error by writing a new envelope
// and renaming it over the old one (OutboundQueue::updateEnvelope), never in place.
struct QueueEnvelope {
    std::string id;
    std::chrono::system_clock::time_point arrival;
    std::string sender;
    std::vector<std::string> recipients;
    std::string clientIp;
    std::string heloName;
    std::string authUser;
    std::string sessionId;
    std::uint32_t attempts = 0;
    std::chrono::system_clock::time_point nextAttempt{};  // epoch = as soon as possible
    std::string lastError;
    bool hold = false;    // written only when set (older readers ignore the keyword)
    bool warned = false;  // delay warning sent; written only when set
    bool smtpUtf8 = false;    // MAIL ... SMTPUTF8; written only when set
    bool requireTls = false;  // MAIL ... REQUIRETLS; written only when set
};

constexpr int QueueEnvelopeVersion = 1;

// Text as described above; nullopt if a value contains CR, LF or NUL (never written).
std::optional<std::string> formatQueueEnvelope(const QueueEnvelope& envelope);
// nullopt if the text is not a valid version-1 envelope.
std::optional<QueueEnvelope> parseQueueEnvelope(std::string_view text);

}  // namespace postern::queue
