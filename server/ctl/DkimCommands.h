// posternctl dkim keygen|list|show: DKIM signing keys (server/dkim), in the key directory
// (dkim.key_dir: <domain>/<selector>.key) or in the shared PostgreSQL (table dkim_keys,
// schema/postgres/006_dkim.sql) with --db.
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// keygen: a new RSA-2048 (default) or Ed25519 key; prints the DNS TXT record to publish.
//   The file is created 0600 (0640 and group server.group / server.user's group when run as
//   root), like tls.key_file must be; its directory 0750. Existing keys are never overwritten.
// list: domain, selector, algorithm, source (file|db); show: the same plus the TXT record.
// Exit: 0 done; 64 usage; 65 bad domain/selector/algorithm; 67 no key (show); 73 the key
// exists; 74 cannot write; 75 database unreachable; 78 configuration (no dkim.key_dir, no
// database, schema not migrated, a bad key file).
int runDkimKeygen(CommandContext& context);
int runDkimList(CommandContext& context);
int runDkimShow(CommandContext& context);

inline constexpr Command DkimKeygenCommand{
    "dkim keygen", "DOMAIN [--selector S] [--algorithm rsa|ed25519] [--db] " POSTERN_CTL_COMMON,
    "create a DKIM key for DOMAIN (in dkim.key_dir, or the database with --db) and print its DNS TXT record",
    &runDkimKeygen};
inline constexpr Command DkimListCommand{"dkim list", "[--db] [--json] " POSTERN_CTL_COMMON,
                                         "list DKIM keys: domain, selector, algorithm, source", &runDkimList};
inline constexpr Command DkimShowCommand{"dkim show", "DOMAIN [--db] [--json] " POSTERN_CTL_COMMON,
                                         "show DOMAIN's DKIM keys and the DNS TXT records to publish", &runDkimShow};

}  // namespace postern::ctl
