// The envelope of a queued message and its on-disk text format (one file per message,
// next to the data file; see OutboundQueue.h for the directory layout).
#pragma once

#include "core/DsnRequest.h"

#include <chrono>
#include <cstdint>
#include <map>
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
//   dsn-ret HDRS                          optional: RET= of MAIL (FULL or HDRS), RFC 3461
//   dsn-envid abc+2Bdef                   optional: ENVID= of MAIL, as xtext
//   dsn-rcpt 0 notify=SUCCESS,FAILURE orcpt=rfc822;a+40b
//                                         optional, per recipient: NOTIFY/ORCPT of the
//                                         recipient line number <n> (0 = first "recipient"
//                                         line of this file); each attribute optional
//   smtputf8 1                            optional: MAIL had SMTPUTF8 (RFC 6531)
//   requiretls 1                          optional: MAIL had REQUIRETLS (RFC 8689)
//   failed 0 5.1.1 550 mx.example.net User+20unknown
//                                         optional, per recipient: recipient <n> failed for
//                                         good (enhanced status, reply code or 0 for a local
//                                         reason, remote host and diagnostic as xtext, each
//                                         possibly empty); only its failure report is still
//                                         owed (it could not be queued), never the message
//
// The DSN lines are separate optional keywords, so a version-1 reader without them still
// reads the file (it delivers without the DSN requests) and the version stays 1. A
// recipient is named by its index rather than by its address: an address may contain
// spaces (quoted local part), an index is one token; the writer numbers the recipients
// it writes, so removing delivered ones renumbers consistently.
// Readers ignore unknown keywords (a later writer may add fields) but refuse a missing
// magic line, a different version, a missing id/arrival/sender or no recipient.
// A delivery worker updates attempts/next-attempt/last-error by writing a new envelope
// and renaming it over the old one (OutboundQueue::updateEnvelope), never in place.
// A recipient that failed for good whose failure report could not be made yet.
struct OwedReport {
    std::string status;      // enhanced status, e.g. "5.1.1"
    int replyCode = 0;       // the remote reply's code; 0: a local reason
    std::string remoteHost;  // may be empty
    std::string diagnostic;  // the reply text or the local reason

    bool operator==(const OwedReport&) const = default;
};

struct QueueEnvelope {
    std::string id;
    std::chrono::system_clock::time_point arrival;
    std::string sender;
    std::vector<std::string> recipients;
    std::string clientIp;
    std::string heloName;
    std::string authUser;  // whose mail: the AUTH user, or a POP-before-SMTP grant's user ("" = none)
    std::string sessionId;
    std::uint32_t attempts = 0;
    std::chrono::system_clock::time_point nextAttempt{};  // epoch = as soon as possible
    std::string lastError;
    bool hold = false;    // written only when set (older readers ignore the keyword)
    bool warned = false;  // delay warning sent; written only when set
    core::MessageDsn dsn;  // RET/ENVID; written only when set
    // NOTIFY/ORCPT by recipient address; entries for addresses not in `recipients` are
    // ignored (not written).
    std::map<std::string, core::RecipientDsn> recipientDsn;
    // The DSN request of `recipient` (empty: none given).
    core::RecipientDsn dsnFor(const std::string& recipient) const {
        auto it = recipientDsn.find(recipient);
        return it == recipientDsn.end() ? core::RecipientDsn{} : it->second;
    }
    bool smtpUtf8 = false;    // MAIL ... SMTPUTF8; written only when set
    bool requireTls = false;  // MAIL ... REQUIRETLS; written only when set
    // Recipients that failed for good, by address, whose failure report is still owed: the
    // delivery agent retries only the report for them (RFC 5321 4.2.1: a 5yz request is not
    // repeated). Entries for addresses not in `recipients` are ignored (not written).
    std::map<std::string, OwedReport> owedReports;
};

constexpr int QueueEnvelopeVersion = 1;

// Text as described above; nullopt if a value contains CR, LF or NUL (never written).
std::optional<std::string> formatQueueEnvelope(const QueueEnvelope& envelope);
// nullopt if the text is not a valid version-1 envelope.
std::optional<QueueEnvelope> parseQueueEnvelope(std::string_view text);

}  // namespace postern::queue
