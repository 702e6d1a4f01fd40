// What a queued message asks of its next hop beyond plain SMTP: SMTPUTF8 (RFC 6531) and
// REQUIRETLS / "TLS-Required: No" (RFC 8689). Pure functions over the envelope and the data.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::delivery {

// RFC 6531 3.4: the transaction needs SMTPUTF8 when an envelope address is non-ASCII (the
// domains are A-labels already, so this is a UTF-8 local part). A message that only carried
// the SMTPUTF8 flag (UTF-8 in header fields, ASCII envelope) does not need it.
bool envelopeNeedsSmtpUtf8(std::string_view sender, const std::vector<std::string>& recipients);

// True if the header section (up to the first empty line, at most `maxHeaderBytes`) of the
// message in `text` has a "TLS-Required: No" field (RFC 8689 5; name and value compared
// case-insensitively, folding and surrounding white space allowed).
bool headerSaysTlsNotRequired(std::string_view text);

// The same for a message file (reads at most the first 1 MiB). false if unreadable.
bool fileSaysTlsNotRequired(const std::string& path);

}  // namespace postern::delivery
