// Relay policy: may this client send to this recipient? Local recipients are looked up;
// remote ones need SMTP AUTH or a POP-before-SMTP grant (RFC 5321 3.6, 3.9; RFC 6409 5).
#pragma once

#include "core/ClientAddress.h"
#include "core/GrantStore.h"
#include "core/PolicyDelegate.h"
#include "core/UserDirectory.h"
#include "policy/RoleAddressPolicy.h"
#include "smtpproto/ReplyCode.h"
#include "smtpproto/SmtpAddress.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace postern::policy {

// What the policy may ask about the session. References must outlive the decide() call.
struct RecipientContext {
    bool authenticated = false;            // SMTP AUTH succeeded in this session
    const core::ClientAddress& client;     // for the grant lookup
    core::UserDirectory& directory;        // local domains and recipients
    core::GrantStore* grants = nullptr;    // nullptr: POP-before-SMTP is off on this listener
    // Domain whose postmaster the bare "<Postmaster>" forward-path means (RFC 5321 4.5.1):
    // looked up as "postmaster@<postmasterDomain>". Empty: bare Postmaster is refused (550).
    std::string postmasterDomain;
    // Role addresses (RoleAddressPolicy): where postmaster@ / abuse@ a local domain go when
    // the directory has no such recipient.
    RoleAddresses roles = {};
};

struct RcptVerdict {
    enum class Kind { Accept, Reject, TempFail };

    Kind kind = Kind::TempFail;   // fail closed: only explicit paths accept
    // Reject: 5xx; TempFail: 451 4.3.0; Accept: 250 2.1.5 (replies::recipientOk()).
    smtp::Reply reply = smtp::replies::tempFailure();
    // Short machine reason for the log: "local", "relay_auth", "relay_grant",
    // "unknown_user", "bad_local_part", "relay_denied", "directory_tempfail",
    // "grant_tempfail", "no_postmaster".
    std::string reason;

    bool isLocal = false;                  // the recipient domain is one of ours
    std::vector<std::string> mailboxes;    // Accept, local: mailbox locations (aliases expanded)
    // Accept, local: the quotas of those mailboxes that have one (RecipientLookup::quotas);
    // none for postmaster and abuse, which must always take mail (RFC 5321 4.5.1).
    std::map<std::string, std::uint64_t> quotas;
    // Accept: addresses that go to the outbound queue - for a local alias the remote
    // targets from the directory, for a relayed recipient the recipient itself.
    std::vector<std::string> forwards;
    bool viaGrant = false;                 // relayed because of a POP-before-SMTP grant
    std::string grantUser;                  // who holds that grant (for the log)
    std::vector<std::string> grantSenders;  // the grant holder's MAIL FROM addresses
    std::map<std::string, std::string> grantLimits;  // the grant holder's own outbound limits
    std::string limit;                      // TransactionPolicy: which outbound limit was hit
    std::string quotaMailbox;               // TransactionPolicy: the full mailbox (mailbox_full, over_quota)
    bool countedMessage = false;            // TransactionPolicy: this call counted the message (grant relay)
    // TransactionPolicy: the policy service's answer (Accept: Continue, Prepend, Hold or
    // Discard for the transaction; refused: the Refuse that decided it).
    core::PolicyDecision delegated;
};

// Pure decision logic over the core ports; blocking (the ports are). Thread-safe.
class RelayPolicy {
public:
    // Rules, in order (only the parsed domain ever decides where mail goes):
    //  1. bare <Postmaster>: lookup "postmaster@<postmasterDomain>" as in 3 (No -> as the
    //     role address of 3).
    //  2. address-literal domain: remote (no local literals yet) -> 4.
    //  3. isLocalDomain(domain): TempFail -> 451 4.3.0; Yes ->
    //       local part containing '%', '!' or '@' (also when it was quoted) -> 550 5.1.1:
    //       such a local part is never a mailbox of ours, and forwarding it would make us
    //       an open relay (user%remote@local, remote!user@local, "user@remote"@local);
    //       lookupRecipient: Yes -> Accept (mailboxes, forwards), No -> postmaster (any case)
    //       and, when configured, abuse: RoleAddressPolicy::redirect (RFC 5321 4.5.1, RFC
    //       2142: always accepted); anything else 550 5.1.1 User unknown; TempFail -> 451 4.3.0.
    //  4. remote: authenticated -> Accept; else grants && grants->lookup(client, sender):
    //       Yes -> Accept (viaGrant), TempFail -> 451 4.7.1, No -> 554 5.7.1 Relay access
    //       denied. The grant store is only asked here, never for local recipients.
    //       `sender` (the MAIL FROM, "" for <>) picks among several users' grants for the
    //       address (subscribers behind one NAT address): the one it belongs to.
    // `rcpt` must be ok (a parse failure is the command parser's reply); if not: 501 5.1.3.
    static RcptVerdict decide(const smtp::ParsedPath& rcpt, const RecipientContext& ctx,
                              const std::string& sender = std::string());

    // True if `localPart` routes somewhere else by an old convention (RFC 5321 3.6.1
    // source routing's heirs: '%' hack, UUCP bang paths, embedded '@').
    static bool isRoutingLocalPart(const std::string& localPart);
};

}  // namespace postern::policy
