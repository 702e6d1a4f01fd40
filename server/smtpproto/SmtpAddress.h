// Reverse-path / Forward-path parser, by the grammar of RFC 5321 4.1.2 (with 4.1.3 address
// literals, 4.5.3.1 size limits, RFC 6531 UTF-8 local parts when SMTPUTF8 is enabled).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace postern::smtp {

enum class PathKind {
    Reverse,  // MAIL FROM: "<>" (null sender) is allowed
    Forward,  // RCPT TO:   "<Postmaster>" without a domain is allowed (RFC 5321 4.5.1)
};

enum class PathError {
    None,
    MissingBrackets,    // no "<" ... ">" around the path
    NullNotAllowed,     // "<>" as a forward-path
    BadSourceRoute,     // "@a,@b:" part not by the A-d-l grammar
    BadLocalPart,       // not a Dot-string or Quoted-string
    LocalPartTooLong,   // > 64 octets as sent (RFC 5321 4.5.3.1.1)
    MissingDomain,      // no "@domain" (and not the bare Postmaster forward-path)
    BadDomain,          // label grammar, empty label, trailing dot, 8-bit, bad IDN (A-/U-label)
    DomainTooLong,      // label > 63 or domain > 255 octets (RFC 5321 4.5.3.1.2, RFC 1035 2.3.4)
    BadAddressLiteral,  // "[...]" is neither a valid IPv4 nor "IPv6:" literal
    PathTooLong,        // > 256 octets including "<" and ">" (RFC 5321 4.5.3.1.3)
    EightBitNotAllowed, // non-ASCII octet in the local part and SMTPUTF8 is off (or bad UTF-8)
    TrailingGarbage,    // characters after ">" (only when the whole text must be the path)
};

struct PathOptions {
    bool allowUtf8 = false;  // RFC 6531: UTF-8 local parts; only when SMTPUTF8 was negotiated
};

// The result of parsing one path. When ok is false only error/message are meaningful.
struct ParsedPath {
    bool ok = false;
    PathError error = PathError::MissingBrackets;
    std::string message;       // short English description of the error (for logs)

    // Local part with the quoting removed (`"john doe"` -> `john doe`, `"a\"b"` -> `a"b`);
    // case preserved (RFC 5321 2.4: local parts are case-sensitive). It is kept exactly as
    // the client meant it, so `"user@remote"@local` has localPart `user@remote`: callers
    // that route must look at `domain` only and treat such local parts as invalid mailboxes.
    std::string localPart;
    // Lower-cased ASCII domain without trailing dot (U-labels converted to A-labels, IDNA2008
    // via core::domainToAscii: "bücher.example" -> "xn--bcher-kva.example"), or an address literal in canonical
    // form "[192.0.2.1]" / "[IPv6:2001:db8::1]" (see isAddressLiteral). Empty for <> and
    // for bare <Postmaster>.
    std::string domain;
    bool isNull = false;          // "<>" (Reverse only)
    bool isPostmaster = false;    // bare "<Postmaster>" forward-path (any case); localPart
                                  // is "postmaster", domain is empty
    bool isAddressLiteral = false;
    bool hasUtf8 = false;         // the path as sent had non-ASCII octets: a UTF-8 local part
                                  // or U-label domain (only with allowUtf8; RFC 6531 3.4 then
                                  // needs the SMTPUTF8 parameter)

    // "local@domain" with the local part re-quoted when it is not a valid Dot-string
    // (so it can be sent again on the wire); "" for the null path; "postmaster" for bare
    // Postmaster. Source routes are never part of it (RFC 5321 4.1.2 / appendix C).
    std::string address() const;
};

// Parses a path "<...>". Exactly the path: no leading space (the command parser strips the
// optional space after "FROM:"). If `consumed` is null the whole text must be the path
// (else TrailingGarbage); otherwise the path is parsed as a prefix and *consumed receives
// the number of octets it used (the ESMTP parameters follow). Source routes ("@a,@b:")
// are checked by grammar and then ignored (RFC 5321 4.1.2, appendix C).
ParsedPath parsePath(std::string_view text, PathKind kind, const PathOptions& options = {},
                     std::size_t* consumed = nullptr);

// Parses a bare "local@domain" mailbox (no brackets, no source route) from config or a
// backend. The same rules and limits as inside a path; Postmaster without domain is refused.
ParsedPath parseMailbox(std::string_view text, const PathOptions& options = {});

// True if `localPart` (as in ParsedPath::localPart) can be written without quotes, i.e.
// it is an RFC 5321 Dot-string.
bool isDotString(std::string_view localPart, bool allowUtf8 = false);

}  // namespace postern::smtp
