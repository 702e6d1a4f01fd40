// Configuration of one LDAP backend instance: parsed and validated once from the
// auth.backend.<name>.* map into an immutable struct (unknown keys are refused by name).
#pragma once

#include "LdapTemplate.h"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace postern::plugins::ldap {

enum class LdapMode { Search, Bind };
enum class TlsRequireCert { Demand, Allow, Never };

// Config keys (under auth.backend.<instance>.) and their defaults:
//   uris               space/comma list of ldap:// or ldaps:// URIs, in order of preference (required)
//   mode               search (search-then-bind) | bind (direct bind with dn_template); search
//   bind_dn            service DN for searches ("" = anonymous searches)
//   bind_password_file file holding the service password; must not be group/world-accessible
//   base               search base (required)
//   user_filter        (&(objectClass=inetOrgPerson)(mail=%u))     [search mode]
//   dn_template        e.g. uid=%n,ou=people,dc=example,dc=test       [bind mode, required]
//   recipient_filter   (|(mail=%u)(mailAlternateAddress=%u))
//   alias_filter       "" (no alias search), e.g. (&(objectClass=mailAlias)(mail=%u))
//   alias_attribute    mailForwardingAddress
//   mail_attributes    mail, mailAlternateAddress   (-> sender addresses)
//   user_attribute     "" (= the first value of the first mail attribute; else the login,
//                      if the lookup template pins its domain: LdapTemplate::pinsDomain)
//   mailbox_attribute  "" (none: the server's default <domain>/<local>)
//   disabled_filter    "" e.g. (accountStatus=disabled) or AD's
//                      (userAccountControl:1.2.840.113556.1.4.803:=2)
//   disabled_attribute, disabled_value  "" (both or neither; case-insensitive compare)
//   local_domains      "" comma list of domains hasDomain() answers yes for
//   domain_filter      "" e.g. (&(objectClass=domain)(dc=%d)) or (mail=*@%d); any entry = local
//   starttls           no (yes: StartTLS on ldap:// URIs; not with ldaps://)
//   ca_file            "" (system trust store)
//   tls_require_cert   demand | allow | never; demand
//   network_timeout    5s  (TCP connect + TLS handshake)
//   bind_timeout       5s
//   search_timeout     5s
//   pool_size          4   (connections per server)
//   probe_interval     5s  (how often a server marked down is probed; the first at once)
//   referrals          no
//   keepalive_idle     60s (TCP keepalive: idle time before the first probe; whole seconds)
//   keepalive_interval 10s (between keepalive probes; whole seconds)
//   keepalive_probes   3   (unanswered probes before the kernel drops the connection)
// (The host consumes auth.backend.<name>.domains itself, so the local domain list is
// local_domains, as in the passwd-file plugin.)
struct LdapConfig {
    std::vector<std::string> uris;
    LdapMode mode = LdapMode::Search;
    std::string bindDn;
    std::string bindPassword;  // read from bind_password_file; never logged
    std::string base;
    LdapTemplate userFilter;
    LdapTemplate dnTemplate;
    LdapTemplate recipientFilter;
    LdapTemplate aliasFilter;  // empty(): no alias search
    std::string aliasAttribute = "mailForwardingAddress";
    std::vector<std::string> mailAttributes{"mail", "mailAlternateAddress"};
    std::string userAttribute;
    std::string mailboxAttribute;
    LdapTemplate disabledFilter;  // has no placeholders (refused: it is applied to one entry)
    std::string disabledAttribute;
    std::string disabledValue;
    std::vector<std::string> localDomains;
    LdapTemplate domainFilter;
    bool startTls = false;
    std::string caFile;
    TlsRequireCert tlsRequireCert = TlsRequireCert::Demand;
    std::chrono::milliseconds networkTimeout{5000};
    std::chrono::milliseconds bindTimeout{5000};
    std::chrono::milliseconds searchTimeout{5000};
    int poolSize = 4;
    std::chrono::milliseconds probeInterval{5000};
    bool referrals = false;
    std::chrono::milliseconds keepaliveIdle{60000};
    std::chrono::milliseconds keepaliveInterval{10000};
    int keepaliveProbes = 3;

    // Throws std::invalid_argument naming the key (unknown key, missing or bad value, a
    // secret file that is group/world-accessible or unreadable).
    static LdapConfig fromMap(const std::map<std::string, std::string>& config);
};

// Helpers shared with the tests.
// core::parseDuration ("5s", "500ms", "1m"), at most 1d; the error names the key.
std::chrono::milliseconds parseLdapDuration(const std::string& key, const std::string& value);
std::vector<std::string> splitList(const std::string& value);  // on commas and blanks
// Reads the secret file (first line, trailing CR/LF removed). Throws std::invalid_argument
// if it is not a regular file, cannot be read or has any group/other permission bit set.
std::string readSecretFile(const std::string& key, const std::string& path);

}  // namespace postern::plugins::ldap
