// posternctl grant list|add|revoke|flush: the POP-before-SMTP grants every clustered node
// shares (table pop_before_smtp_grants, schema/postgres/002_cluster.sql).
#pragma once

#include "Command.h"
#include "UserCommands.h"
#include "config/ServerConfig.h"
#include "pg/Connection.h"

#include <cstddef>
#include <optional>
#include <string>

namespace postern::ctl {

// The grants live in cluster.conninfo's database (without it posternd keeps them in memory
// and these commands exit 78 saying so). IP arguments are keyed as the daemon keys a login from them
// (IPv4 exact, IPv6 masked to pop_before_smtp.ipv6_prefix; see grants/GrantKey.h); revoke
// also takes a key as list shows it ("2001:db8:1:2::/64"). Nodes may keep answering from
// their cache for cluster.grant_cache_ttl after a revoke or flush.
// Exit: 0 done; 64 usage; 65 malformed address, user or lifetime; 67 no such grant (revoke);
// 75 database unreachable; 78 configuration (no postgres backend, schema not migrated).
int runGrantList(CommandContext& context);
int runGrantAdd(CommandContext& context);
int runGrantRevoke(CommandContext& context);
int runGrantFlush(CommandContext& context);

inline constexpr Command GrantListCommand{
    "grant list", "[--all] [--json] " POSTERN_CTL_COMMON,
    "list POP-before-SMTP grants: key, user, expires, last used, live|expired (--all: expired too)", &runGrantList};
inline constexpr Command GrantAddCommand{
    "grant add", "IP USER [--lifetime 600s] " POSTERN_CTL_COMMON,
    "let IP relay as USER for the lifetime (default pop_before_smtp.lifetime), as a POP3 login would;"
    " other users' grants for IP stay", &runGrantAdd};
inline constexpr Command GrantRevokeCommand{"grant revoke", "IP|KEY " POSTERN_CTL_COMMON,
                                            "delete the grants covering IP, every user's (or the key as listed)", &runGrantRevoke};
inline constexpr Command GrantFlushCommand{"grant flush", "[--expired] " POSTERN_CTL_COMMON,
                                           "delete every grant (--expired: only expired ones)", &runGrantFlush};

// Deletes every grant of `user` (user disable / passwd) or of every user of a domain (domain
// delete --force). nullopt if the grants table does not exist (schema 002 not applied:
// nothing to revoke). Throws CtlError(ExitTempFail) if the database fails.
enum class GrantOwner { User, Domain };
std::optional<std::size_t> revokeUserGrants(pg::Connection& connection, GrantOwner owner, const std::string& who);

// A disabled account, a changed password or a deleted account (or domain) must not keep
// relaying on an earlier POP3 login: deletes the grants where the nodes keep them, the shared
// table in cluster.conninfo's database, and says how many. A single node keeps its grants in
// memory, out of reach: a note on c.err says so. Nothing when POP-before-SMTP is off.
void revokeGrantsOf(const config::ServerConfig& cfg, GrantOwner owner, const std::string& who, CommandContext& c);

}  // namespace postern::ctl
