// Delivery status notifications (RFC 3464) as sent by this MTA: multipart/report with a
// human-readable part, message/delivery-status and the original header as
// text/rfc822-headers (RFC 6522) or, for RET=FULL, the whole message as message/rfc822.
// Bounces (Action: failed), delay warnings (delayed) and, for NOTIFY=SUCCESS (RFC 3461),
// success reports: delivered (stored here) and relayed (passed to a next hop without DSN).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace postern::delivery {

enum class DsnAction { Failed, Delayed, Delivered, Relayed };

struct DsnRecipient {
    std::string address;      // Final-Recipient: rfc822; <address>
    std::string status;       // "5.1.1" (Status:)
    std::string remoteMta;    // host name for Remote-MTA: dns; (empty: none)
    std::string diagnostic;   // remote reply "550 5.1.1 ..." (Diagnostic-Code: smtp;) or
    bool diagnosticIsSmtp = true;  //   a local reason (Diagnostic-Code: X-Postern;)
    std::string originalRecipient; // ORCPT: "rfc822;a@b" (Original-Recipient:; empty: none)
};

struct DsnInput {
    DsnAction action = DsnAction::Failed;
    std::string reportingMta;      // our host name
    std::string queueId;
    std::string originalSender;    // envelope sender of the original (the DSN's To:)
    std::chrono::system_clock::time_point arrival;
    std::chrono::system_clock::time_point now;
    std::chrono::system_clock::time_point willRetryUntil;  // Delayed only: arrival + lifetime
    std::vector<DsnRecipient> recipients;
    std::string originalHeaders;   // header section of the original, CRLF lines
    std::string envelopeId;        // ENVID, decoded (Original-Envelope-Id:; empty: none)
    // RET=FULL: the whole original message (attached as message/rfc822 instead of its
    // header section); empty: the header section is attached.
    std::string originalMessage;
    std::string boundary;          // MIME boundary; must not occur in the headers
};

// The complete message (CRLF line ends), ready to be stored. Every header and
// delivery-status field is ASCII; control characters in remote replies are replaced;
// an ENVID or ORCPT that is not printable ASCII is shown as xtext.
std::string formatDsn(const DsnInput& input);

// A MIME boundary for a report: "<queue id>/<random>/<host name>", cut to the 70 characters
// RFC 2046 5.1.1 allows (a long host name would make it longer).
std::string dsnBoundary(const std::string& queueId, std::uint64_t random, const std::string& hostname);

// The header section (up to and including the empty line's preceding CRLF) of a
// message, at most maxBytes (cut at a line end).
std::string headerSection(const std::string& message, std::size_t maxBytes = 64 * 1024);

}  // namespace postern::delivery
