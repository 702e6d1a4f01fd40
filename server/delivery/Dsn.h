// Delivery status notifications (RFC 3464) as sent by this MTA: multipart/report with a
// human-readable part, message/delivery-status and the original header as
// text/rfc822-headers (RFC 6522). Bounces (Action: failed) and delay warnings (delayed).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace postern::delivery {

enum class DsnAction { Failed, Delayed };

struct DsnRecipient {
    std::string address;      // Final-Recipient: rfc822; <address>
    std::string status;       // "5.1.1" (Status:)
    std::string remoteMta;    // host name for Remote-MTA: dns; (empty: none)
    std::string diagnostic;   // remote reply "550 5.1.1 ..." (Diagnostic-Code: smtp;) or
    bool diagnosticIsSmtp = true;  //   a local reason (Diagnostic-Code: X-Postern;)
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
    std::string boundary;          // MIME boundary; must not occur in the headers
};

// The complete message (CRLF line ends), ready to be stored. Every header and
// delivery-status field is ASCII; control characters in remote replies are replaced.
std::string formatDsn(const DsnInput& input);

// The header section (up to and including the empty line's preceding CRLF) of a
// message, at most maxBytes (cut at a line end).
std::string headerSection(const std::string& message, std::size_t maxBytes = 64 * 1024);

}  // namespace postern::delivery
