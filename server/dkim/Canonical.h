// DKIM canonicalisation (RFC 6376 3.4) and the few message-parsing steps signing needs:
// splitting a message into header fields and body, and finding the From domain. Every
// function takes untrusted octets (any bytes, any length) and never throws on them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::dkim {

enum class Canon { Simple, Relaxed };

// One header field as it appears in the message: its name (as written) and the whole field
// including continuation lines and the final CRLF.
struct HeaderField {
    std::string_view name;
    std::string_view raw;
};

// A message split at the first empty line (RFC 5322 2.1). Lines end in CRLF; a bare LF or CR
// is an ordinary octet. No empty line: every octet is header, the body is empty.
struct MessageParts {
    std::vector<HeaderField> headers;
    std::string_view body;
};
MessageParts splitMessage(std::string_view message);

// RFC 6376 3.4.1 / 3.4.2: the field as it enters the header hash, ending in CRLF.
// Relaxed: name lower-cased, continuation CRLFs removed, WSP runs -> one SP, WSP around
// the colon and at the end of the value removed.
std::string canonicalHeader(std::string_view raw, Canon canon);

// RFC 6376 3.4.3 / 3.4.4: the canonical body is handed to `out` in pieces (a message body
// can be large; it is hashed, never copied whole). Relaxed: WSP at line ends removed, WSP runs
// -> one SP; both: empty lines at the end removed; simple: an empty body is one CRLF.
void canonicalBody(std::string_view body, Canon canon, const std::function<void(std::string_view)>& out);
std::string canonicalBodyString(std::string_view body, Canon canon);

// The From header's single address: the domain after its '@' (lower-cased, as written:
// the caller converts IDNs). Why there is none: "no_from" (no From field), "multiple_from"
// (several fields, or several addresses / a group in one), "bad_from" (no domain found).
struct FromDomain {
    std::string domain;
    std::string problem;  // empty on success
    // The local part, lower-cased, blanks removed; empty when it is (or has) a quoted string,
    // which is never compared (DKIM signs only a From the sender owns: SigningSink).
    std::string local;
};
FromDomain fromDomain(const std::vector<HeaderField>& headers);
// The same for one field's value (after the colon), for tests and the fuzz target.
FromDomain fromDomainOfValue(std::string_view value);

}  // namespace postern::dkim
