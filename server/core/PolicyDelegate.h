// Port: an outside policy service asked about each recipient (Postfix's policy delegation,
// check_policy_service). The session hands over what it knows about the transaction; the
// implementation (server/policyd) owns the wire format, the sockets and the failure rules.
#pragma once

#include "core/ClientAddress.h"

#include <cstdint>
#include <string>

namespace postern::core {

// What the SMTP session knows when a recipient is checked. Empty strings: unknown.
struct PolicyFacts {
    std::string sessionId;       // for log lines
    bool submission = false;     // listener role submission (else mx)
    std::string protocolState = "RCPT";
    bool extended = false;       // EHLO (ESMTP) rather than HELO (SMTP)
    std::string heloName;
    std::string sender;          // MAIL FROM address; "" = null sender
    std::string recipient;       // this RCPT TO address
    std::string instance;        // unique per mail transaction (same for all its RCPTs)
    ClientAddress client;
    std::string serverAddress;   // local address of the connection ("" = unknown)
    std::uint16_t serverPort = 0;
    std::string saslMethod;      // "" = not authenticated
    std::string saslUsername;
    std::uint64_t size = 0;      // MAIL FROM SIZE= (0 = not declared)
    bool tls = false;
    std::string tlsProtocol;     // "TLSv1.3" ("" = no TLS)
    std::string tlsCipher;       // "TLS_AES_256_GCM_SHA384" ("" = unknown)
    int tlsCipherBits = 0;
};

// The policy service's answer, already mapped to what the session does.
struct PolicyDecision {
    enum class Kind {
        Continue,  // OK, DUNNO, unsupported actions (logged), the role is not consulted
        Refuse,    // REJECT, DEFER*, 4NN/5NN, or the default action after a failure
        Prepend,   // add `header` to the message
        Hold,      // accept; the queued copy waits on hold until released
        Discard,   // accept with 250, deliver nothing (logged)
    };
    Kind kind = Kind::Continue;
    int code = 0;          // Refuse: 4xx or 5xx reply code
    int enhanced = -1;     // Refuse: RFC 3463 subject * 100 + detail (class from code); -1 = none
    std::string text;      // Refuse: reply text; Hold / Discard: the reason, for the log
    std::string header;    // Prepend: one header line without CRLF ("X-Name: value")
    std::string action;    // the service's action as received (or "default"), for the log
};

// Thread-safe; blocking for at most the configured timeout. Never throws.
class PolicyDelegate {
public:
    virtual ~PolicyDelegate() = default;
    virtual PolicyDecision check(const PolicyFacts& facts) = 0;
};

}  // namespace postern::core
