// Dovecot's dovecot-uidlist (the IMAP UID of each file of a Maildir), read for the POP3
// UIDLs of a mailbox migrated from Dovecot (store.dovecot_uidlist). Format 3 (Dovecot 1.1
// and later): a header "3 V<uidvalidity> N<next uid> G<guid> ..." (fields in any order), then
// one record per message: "<uid> [<key><value> ...] :<file name>". Format 1 (Dovecot 1.0,
// the layout of Courier's courierimapuiddb): "1 <uidvalidity> <next uid>", records
// "<uid> <file name>". The file name
// is the last one Dovecot saw; a message is matched by its base name (before ':'), which
// flag changes do not touch.
#pragma once

#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::store {

// Base name -> the UIDL Dovecot's POP3 server gave that message: the record's P field (a UIDL
// Dovecot kept from an earlier server) when it is a valid UIDL (RFC 1939 7: 1..70 octets in
// 0x21..0x7E), else Dovecot's default pop3_uidl_format %08Xu%08Xv (UID, then UIDVALIDITY,
// lower-case hex). Empty for a file that is not a dovecot-uidlist of a known format or has no
// UIDVALIDITY; malformed records are skipped.
std::unordered_map<std::string, std::string> dovecotUidls(std::string_view text);

}  // namespace postern::store
