// posternctl alias add|delete|list and domain add|delete|list: the PostgreSQL backend's
// aliases and domains tables (default schema).
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// Options as for the user commands (--config, --backend NAME of a postgres backend, -D).
// Exit: 0 done; 64 usage; 65 malformed address or domain, or a domain still in use without
// --force; 67 no such alias; 68 unknown domain; 73 already exists; 75 database unreachable;
// 78 configuration (no postgres backend, schema missing).
int runAliasAdd(CommandContext& context);
int runAliasDelete(CommandContext& context);
int runAliasList(CommandContext& context);
int runDomainAdd(CommandContext& context);
int runDomainDelete(CommandContext& context);
int runDomainList(CommandContext& context);

inline constexpr Command AliasAddCommand{"alias add", "ALIAS DESTINATION... " POSTERN_CTL_COMMON,
                                         "deliver mail for ALIAS to each DESTINATION (local or remote)",
                                         &runAliasAdd};
inline constexpr Command AliasDeleteCommand{"alias delete", "ALIAS [DESTINATION...] " POSTERN_CTL_COMMON,
                                            "remove the alias, or only the given destinations", &runAliasDelete};
inline constexpr Command AliasListCommand{"alias list", "[ALIAS|DOMAIN] [--json] " POSTERN_CTL_COMMON,
                                          "list aliases as 'alias -> destination'", &runAliasList};
inline constexpr Command DomainAddCommand{"domain add", "DOMAIN " POSTERN_CTL_COMMON,
                                          "accept mail and accounts for DOMAIN", &runDomainAdd};
inline constexpr Command DomainDeleteCommand{"domain delete", "DOMAIN [--force] " POSTERN_CTL_COMMON,
                                             "remove DOMAIN (--force: with its users and aliases)",
                                             &runDomainDelete};
inline constexpr Command DomainListCommand{"domain list", "[--json] " POSTERN_CTL_COMMON,
                                           "list domains: name, enabled|disabled, users, aliases", &runDomainList};

}  // namespace postern::ctl
