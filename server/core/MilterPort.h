// Port: content filters (Sendmail milters) asked during the SMTP session. The session
// tells what it learns (connect, HELO, MAIL, RCPT, DATA, the message at its end) and maps
// each verdict to a reply; the implementation (server/milter) speaks the milter protocol.
#pragma once

#include "core/ClientAddress.h"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::core {

// What the session knows when it asks: the source of the macros (j, _, {client_addr}, ...).
struct MilterFacts {
    std::string sessionId;
    std::string hostname;     // j
    std::string daemonName;   // {daemon_name}: the listener name
    ClientAddress client;
    std::string clientName;   // {client_name} (the address in brackets when unresolved)
    std::string serverAddr;
    std::uint16_t serverPort = 0;
    std::string heloName;     // {helo_name}
    std::string authUser;     // {auth_authen}
    std::string authType;     // {auth_type}
    std::string tlsVersion;   // {tls_version}
    std::string cipher;       // {cipher}
    std::string sender;       // {mail_addr} (empty = null sender)
    std::string recipient;    // {rcpt_addr} of the RCPT being asked about
    std::string queueId;      // i
};

struct MilterVerdict {
    enum class Kind { Continue, Accept, Reject, TempFail, Discard };
    Kind kind = Kind::Continue;
    // A custom SMTP reply ("550 5.7.1 text", multi-line joined by CRLF without the last),
    // from SMFIR_REPLYCODE, already checked; empty: the session's reply for the kind.
    std::string reply;
    std::string milter;  // which milter decided (for logs)
};

// The message at its end: the chain edits it in place (header, envelope and body actions).
struct MilterMessage {
    std::string sender;                   // reverse-path, "" = <>
    std::vector<std::string> recipients;  // forward-paths, as accepted
    std::string content;                  // the whole message, CRLF lines (header actions and
                                          // a new body are applied to it)
    bool quarantine = false;
    std::string quarantineReason;
    bool contentChanged = false;
    std::vector<std::string> addedRecipients, deletedRecipients;
    bool senderChanged = false;
};

// One SMTP session's view of its milters. Not thread-safe (one session owns it). Never
// throws; failures turn into the configured default action.
class MilterSession {
public:
    virtual ~MilterSession() = default;
    virtual MilterVerdict connect(const MilterFacts& f) = 0;
    virtual MilterVerdict helo(const MilterFacts& f) = 0;
    virtual MilterVerdict mail(const MilterFacts& f) = 0;
    virtual MilterVerdict rcpt(const MilterFacts& f) = 0;
    virtual MilterVerdict data(const MilterFacts& f) = 0;
    // Header*, end of header, body, end of message; the actions are applied to `m`.
    virtual MilterVerdict message(const MilterFacts& f, MilterMessage& m) = 0;
    // The transaction ended before the end of message (RSET, error, new MAIL).
    virtual void abort() = 0;
};

// Thread-safe factory.
class MilterFactory {
public:
    virtual ~MilterFactory() = default;
    // nullptr: no milters for this listener.
    virtual std::unique_ptr<MilterSession> open(std::string_view listener, bool submission) = 0;
};

}  // namespace postern::core
