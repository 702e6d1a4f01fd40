#include "delivery/Dsn.h"

#include "smtpproto/Xtext.h"

#include "core/MailDate.h"
#include "core/Utf8.h"

namespace postern::delivery {

namespace {

// Printable ASCII only, at most `max` octets: remote replies may carry anything.
std::string clean(const std::string& s, std::size_t max = 700) {
    std::string out;
    for (unsigned char c : s) {
        if (out.size() >= max) break;
        out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
    return out;
}

// An address for a report: printable ASCII as it is; in a global report (RFC 6533) also
// valid UTF-8 as it is (utf-8-addr-unitext); anything else cleaned.
std::string reportAddress(const std::string& s, bool global, std::size_t max = 700) {
    if (!global || core::isAscii(s) || !core::isValidUtf8(s) || s.size() > max) return clean(s, max);
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return clean(s, max);
    return s;
}

// "rfc822; a@b", or for a non-ASCII address in a global report "utf-8; jörg@b" (RFC 6533 3).
std::string typedAddress(const std::string& s, bool global) {
    bool utf8 = global && !core::isAscii(s) && core::isValidUtf8(s);
    return std::string(utf8 ? "utf-8; " : "rfc822; ") + reportAddress(s, global);
}

// ENVID / ORCPT values: as they are when printable ASCII, else in xtext (RFC 3461 4.2).
std::string reportValue(const std::string& s, std::size_t max = 600) {
    bool printable = true;
    for (unsigned char c : s) printable = printable && c >= 0x20 && c < 0x7f;
    return clean(printable ? s : smtp::encodeXtext(s), max);
}

// RFC 5322 2.1.1 / RFC 5321 4.5.3.1.6: at most 998 octets before each CRLF.
constexpr std::size_t kMaxLine = 998;

// True when `s` is a sequence of CRLF-ended lines (or ends without one) with no bare CR
// or LF, no NUL and no line over kMaxLine octets: it can be attached as it is.
bool wellFormedLines(const std::string& s) {
    std::size_t lineStart = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            if (i + 1 >= s.size() || s[i + 1] != '\n' || i - lineStart > kMaxLine) return false;
            lineStart = i + 2;
            ++i;
        } else if (s[i] == '\n' || s[i] == '\0') {
            return false;
        }
    }
    return s.size() - lineStart <= kMaxLine;
}

// A header section as attachable text: a bare CR or LF ends a line (CRLF), NUL becomes
// '?', a line over kMaxLine octets is cut, and the last line gets its CRLF. A message
// stored byte-exact (BDAT, BINARYMIME) may carry any of these; the DSN must not.
std::string asCrlfLines(const std::string& s) {
    std::string out;
    std::size_t lineLen = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
            out += "\r\n";
            lineLen = 0;
            continue;
        }
        if (lineLen >= kMaxLine) continue;
        out += c == '\0' ? '?' : c;
        ++lineLen;
    }
    if (lineLen > 0) out += "\r\n";
    return out;
}

// ORCPT as given ("rfc822;a@b"); a non-ASCII value in a global report as "utf-8; <value>"
// (RFC 6533 3), else ASCII/xtext as RFC 3461 4.2 has it.
std::string originalRecipient(const std::string& orcpt, bool global) {
    if (global && !core::isAscii(orcpt) && core::isValidUtf8(orcpt)) {
        auto semi = orcpt.find(';');
        std::string value = semi == std::string::npos ? orcpt : orcpt.substr(semi + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        return "utf-8; " + reportAddress(value, true, 600);
    }
    return reportValue(orcpt);
}

const char* actionName(DsnAction a) {
    switch (a) {
    case DsnAction::Failed: return "failed";
    case DsnAction::Delayed: return "delayed";
    case DsnAction::Delivered: return "delivered";
    case DsnAction::Relayed: return "relayed";
    }
    return "failed";
}

const char* subjectFor(DsnAction a) {
    switch (a) {
    case DsnAction::Failed: return "Undelivered Mail Returned to Sender";
    case DsnAction::Delayed: return "Delayed Mail (still being retried)";
    case DsnAction::Delivered:
    case DsnAction::Relayed: return "Successful Mail Delivery Report";
    }
    return "";
}

const char* idSuffix(DsnAction a) {
    switch (a) {
    case DsnAction::Failed: return ".bounce";
    case DsnAction::Delayed: return ".delay";
    case DsnAction::Delivered: return ".delivered";
    case DsnAction::Relayed: return ".relayed";
    }
    return "";
}

}  // namespace

std::string dsnBoundary(const std::string& queueId, std::uint64_t random, const std::string& hostname) {
    std::string b = queueId + "/" + std::to_string(random) + "/" + hostname;
    if (b.size() > 70) b.resize(70);
    return b;
}

std::string headerSection(const std::string& message, std::size_t maxBytes) {
    std::size_t end = message.find("\r\n\r\n");
    std::string h = end == std::string::npos ? message : message.substr(0, end + 2);
    if (message.rfind("\r\n", 0) == 0) h.clear();  // no header at all
    if (h.size() > maxBytes) {
        auto cut = h.rfind("\r\n", maxBytes);
        h = cut == std::string::npos ? std::string() : h.substr(0, cut + 2);
    }
    if (!h.empty() && h.size() >= 2 && h.compare(h.size() - 2, 2, "\r\n") != 0) h += "\r\n";
    return h;
}

std::string formatDsn(const DsnInput& in) {
    // RFC 6533: when an address of the report is not ASCII (SMTPUTF8 mail), the report is a
    // global one (message/global-delivery-status, utf-8 address type, message/global and
    // message/global-headers for the returned content) and carries the UTF-8 unchanged;
    // such a report itself travels only with SMTPUTF8.
    bool global = !core::isAscii(in.originalSender) && core::isValidUtf8(in.originalSender);
    for (const auto& r : in.recipients)
        global = global || (!core::isAscii(r.address) && core::isValidUtf8(r.address)) ||
                 (!core::isAscii(r.originalRecipient) && core::isValidUtf8(r.originalRecipient));
    const bool failed = in.action == DsnAction::Failed;
    const bool success = in.action == DsnAction::Delivered || in.action == DsnAction::Relayed;
    const std::string crlf = "\r\n";
    std::string m;
    m += "From: Mail Delivery System <MAILER-DAEMON@" + in.reportingMta + ">" + crlf;
    m += "To: <" + reportAddress(in.originalSender, global) + ">" + crlf;
    m += std::string("Subject: ") + subjectFor(in.action) + crlf;
    m += "Date: " + core::rfc5322Date(in.now) + crlf;
    m += "Message-ID: <" + in.queueId + "." + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                                 in.now.time_since_epoch()).count()) +
         idSuffix(in.action) + "@" + in.reportingMta + ">" + crlf;
    // RFC 3834 5: automatic responses are marked, so auto-responders do not answer them.
    m += "Auto-Submitted: auto-replied" + crlf;
    m += "MIME-Version: 1.0" + crlf;
    m += "Content-Type: multipart/report; report-type=delivery-status;" + crlf;
    m += "\tboundary=\"" + in.boundary + "\"" + crlf;
    m += "Content-Transfer-Encoding: 8bit" + crlf;
    m += crlf;
    m += "This is a MIME-encapsulated message." + crlf + crlf;
    // A part whose text has 8-bit octets says so (RFC 2045 6.1: a part without the field is
    // 7bit; the multipart's own field does not cover its parts), as Postfix does.
    auto addPart = [&](const std::string& fields, std::string_view body) {
        m += "--" + in.boundary + crlf + fields;
        if (!core::isAscii(body)) m += "Content-Transfer-Encoding: 8bit" + crlf;
        m += crlf;
        m += body;
    };

    // Part 1: for people.
    std::string text = "This is the mail system at host " + in.reportingMta + "." + crlf + crlf;
    if (failed) {
        text += "I'm sorry to have to inform you that your message could not" + crlf;
        text += "be delivered to one or more recipients. It's attached below." + crlf + crlf;
    } else if (in.action == DsnAction::Delivered) {
        text += "Your message was successfully delivered to the destination(s)" + crlf;
        text += "listed below, as you asked for with NOTIFY=SUCCESS." + crlf + crlf;
    } else if (in.action == DsnAction::Relayed) {
        text += "Your message was successfully relayed to the destination(s) listed" + crlf;
        text += "below. The next system does not offer delivery status notifications," + crlf;
        text += "so you may not hear of the final delivery." + crlf + crlf;
    } else {
        text += "####################################################################" + crlf;
        text += "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #" + crlf;
        text += "####################################################################" + crlf + crlf;
        text += "Your message could not be delivered yet; it is still being retried." + crlf + crlf;
    }
    for (const auto& r : in.recipients) {
        std::string line = "<" + reportAddress(r.address, global) + ">: " + clean(r.diagnostic);
        if (line.size() > kMaxLine) line.resize(kMaxLine);
        text += line + crlf;
    }
    text += crlf;
    addPart("Content-Description: Notification" + crlf + std::string("Content-Type: text/plain; charset=") +
                (global ? "utf-8" : "us-ascii") + crlf,
            text);

    // Part 2: for programs (RFC 3464 2.2 per-message, 2.3 per-recipient fields).
    std::string status;
    if (!in.envelopeId.empty()) status += "Original-Envelope-Id: " + reportValue(in.envelopeId, 200) + crlf;
    status += "Reporting-MTA: dns; " + in.reportingMta + crlf;
    status += "X-Postern-Queue-ID: " + in.queueId + crlf;
    status += "Arrival-Date: " + core::rfc5322Date(in.arrival) + crlf;
    for (const auto& r : in.recipients) {
        status += crlf;
        if (!r.originalRecipient.empty()) status += "Original-Recipient: " + originalRecipient(r.originalRecipient, global) + crlf;
        status += "Final-Recipient: " + typedAddress(r.address, global) + crlf;
        status += std::string("Action: ") + actionName(in.action) + crlf;
        status += "Status: " + clean(r.status, 16) + crlf;
        if (!r.remoteMta.empty()) status += "Remote-MTA: dns; " + clean(r.remoteMta, 255) + crlf;
        if (!r.diagnostic.empty())
            status += std::string("Diagnostic-Code: ") + (r.diagnosticIsSmtp ? "smtp; " : "X-Postern; ") +
                 clean(r.diagnostic) + crlf;
        status += "Last-Attempt-Date: " + core::rfc5322Date(in.now) + crlf;
        if (in.action == DsnAction::Delayed) status += "Will-Retry-Until: " + core::rfc5322Date(in.willRetryUntil) + crlf;
    }
    status += crlf;
    addPart("Content-Description: Delivery report" + crlf + std::string("Content-Type: message/") +
                (global ? "global-" : "") + "delivery-status" + crlf,
            status);

    // Part 3: the original header (RFC 6522 / RFC 3462 text/rfc822-headers), or the whole
    // message for RET=FULL (RFC 3461 4.3, RFC 3464 2: message/rfc822).
    const char* what = failed ? "Undelivered Message" : success ? "Message" : "Delayed Message";
    // RET=FULL of a message that is not CRLF lines of at most 998 octets (stored
    // byte-exact from BDAT/BINARYMIME) cannot go into this 8bit report: its header
    // section is returned instead (RFC 3461 4.3 lets the MTA return less than asked).
    if (!in.originalMessage.empty() && wellFormedLines(in.originalMessage)) {
        const std::string& original = in.originalMessage;
        addPart(std::string("Content-Description: ") + what + crlf + "Content-Type: message/" +
                    (global ? "global" : "rfc822") + crlf,
                original);
        if (original.size() < 2 || original.compare(original.size() - 2, 2, crlf) != 0) m += crlf;
    } else {
        addPart(std::string("Content-Description: ") + what + " Headers" + crlf + "Content-Type: " +
                    (global ? "message/global-headers" : "text/rfc822-headers") + crlf,
                asCrlfLines(in.originalHeaders));
    }
    m += crlf + "--" + in.boundary + "--" + crlf;
    return m;
}

}  // namespace postern::delivery
