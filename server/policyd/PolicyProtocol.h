// The Postfix policy delegation protocol (SMTPD_POLICY_README), pure: request text from
// the session's facts, response framing and parsing, and the action language of access(5)
// mapped to a core::PolicyDecision. No sockets here (PolicyClient), no decisions about
// failures (PolicyDelegation).
//
// Request: one "name=value" line per attribute, LF-terminated, then an empty line.
// Response: "name=value" lines, then an empty line; only "action" is used (others ignored).
#pragma once

#include "core/PolicyDelegate.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::policyd {

using Attributes = std::vector<std::pair<std::string, std::string>>;

// The attributes Postfix's smtpd sends (3.x order), filled from `facts`; what Postern does
// not know is sent empty as Postfix does (queue_id, ccert_*, encryption_protocol/cipher,
// etrn_domain, stress, sasl_sender), client_name and reverse_client_name are "unknown"
// (Postfix with smtpd_peername_lookup = no), recipient_count is 0 at RCPT (Postfix: non-zero
// only at DATA / END-OF-MESSAGE), policy_context is the listener role ("mx", "submission").
Attributes requestAttributes(const core::PolicyFacts& facts);

// A value as it may go on the wire: CR, LF and NUL (which would end the line or the
// request early) become '?'. '=' stays: a server splits each line at the first '='.
std::string wireValue(std::string_view value);

// "name=value\n" per attribute, then "\n". Names are ours (never contain '=' or LF); values
// pass through wireValue().
std::string formatRequest(const Attributes& attributes);

// Longest response accepted (a protocol bound, not a tunable: real answers are one short
// action line; anything longer is a broken or hostile peer).
constexpr std::size_t MaxResponseBytes = 16 * 1024;

// Length of the first complete response in `buffer` (up to and including the LF of the
// empty line that ends it); 0 if it is not complete yet. Lines may end in LF or CRLF.
std::size_t responseLength(std::string_view buffer);

struct Response {
    bool ok = false;
    std::string action;  // the first "action=" value (may be empty text when ok is false)
    std::string error;   // why not ok: "empty_response", "no_action", "malformed_line"
};

// Parses one complete response (as delimited by responseLength; a missing final empty
// line is tolerated). A line without '=' or an empty response, or no "action" attribute,
// is not ok. Other attributes are ignored (Postfix: ATTR_FLAG_NONE).
Response parseResponse(std::string_view block);

enum class ActionStatus {
    Known,        // understood and mapped
    Unsupported,  // FILTER, REDIRECT, BCC: logged, treated as DUNNO
    Unknown,      // not an action of access(5) for policy services: the default action applies
    Malformed,    // a known keyword with bad arguments (PREPEND without a header): default action
};

struct ActionResult {
    ActionStatus status = ActionStatus::Unknown;
    core::PolicyDecision decision;  // Continue unless status is Known
    // WARN / INFO text, the unsupported keyword, or why it is malformed: for the log.
    std::string note;
};

// Maps one action (keywords case-insensitive, as Postfix compares them):
//   OK, DUNNO, DEFER_IF_REJECT      -> Continue (nothing after the policy step could reject)
//   REJECT [text]                  -> Refuse 550 5.7.1 (text or "Access denied")
//   DEFER / DEFER_IF_PERMIT [text] -> Refuse 450 4.7.1 (text or "Service temporarily unavailable")
//   4NN / 5NN [d.d.d] [text]       -> Refuse with that code; a leading enhanced code is used
//                                     (its class corrected to the reply's, as Postfix does),
//                                     else x.7.1. 421 / 521 become 450 / 550: Postern answers
//                                     the RCPT and keeps the session (it does not hang up).
//   PREPEND Name: value            -> Prepend (a header field name of printable ASCII, ':')
//   HOLD [text], DISCARD [text]    -> Hold, Discard
//   WARN / INFO text               -> Continue, note = text (logged by the caller)
//   FILTER, REDIRECT, BCC ...      -> Unsupported
// `action.decision.action` is the action as received (trimmed).
ActionResult interpretAction(std::string_view action);

}  // namespace postern::policyd
