// SMTP replies built from enums: basic reply codes (RFC 5321 4.2) with enhanced
// status codes (RFC 3463 class.subject.detail, sent per RFC 2034 when negotiated).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace postern::smtp {

// RFC 3463 subject.detail, encoded as subject * 100 + detail. The class digit (2/4/5) is
// never stored: it is taken from the basic reply code, so a reply cannot carry a class
// that contradicts its code (e.g. "550 4.1.1").
enum class Enhanced {
    None = -1,  // no enhanced code (greeting, EHLO/HELO response: RFC 2034 4)

    Other = 0,                      // x.0.0 other undefined status
    OtherAddress = 100,             // x.1.0 other address status (2.1.0 sender ok)
    BadDestinationMailbox = 101,    // x.1.1 bad destination mailbox address (user unknown)
    BadDestinationSystem = 102,     // x.1.2 bad destination system address
    BadDestinationSyntax = 103,     // x.1.3 bad destination mailbox address syntax
    DestinationValid = 105,         // x.1.5 destination address valid (2.1.5 recipient ok)
    BadSenderSyntax = 107,          // x.1.7 bad sender's mailbox address syntax
    BadSenderSystem = 108,          // x.1.8 bad sender's system address
    OtherMailbox = 200,             // x.2.0 other or undefined mailbox status
    MailboxFull = 202,              // x.2.2 mailbox full
    MessageLengthExceeded = 203,    // x.2.3 message length exceeds administrative limit
    OtherSystem = 300,              // x.3.0 other or undefined mail system status
    SystemFull = 301,               // x.3.1 mail system full
    SystemNotAccepting = 302,       // x.3.2 system not accepting network messages
    MessageTooBig = 304,            // x.3.4 message too big for system
    SystemMisconfigured = 305,      // x.3.5 system incorrectly configured
    OtherNetwork = 400,             // x.4.0 other or undefined network or routing status
    BadConnection = 402,            // x.4.2 bad connection (timeouts, dropped sessions)
    RoutingLoop = 406,              // x.4.6 routing loop detected (too many Received fields)
    OtherProtocol = 500,            // x.5.0 other or undefined protocol status
    InvalidCommand = 501,           // x.5.1 invalid command
    SyntaxError = 502,              // x.5.2 syntax error
    TooManyRecipients = 503,        // x.5.3 too many recipients
    InvalidArguments = 504,         // x.5.4 invalid command arguments
    LineTooLong = 506,              // x.5.6 line too long (RFC 4954 registered it for AUTH lines)
    OtherMedia = 600,               // x.6.0 other or undefined media error
    ConversionRequired = 603,       // x.6.3 conversion required but not supported (RFC 3030 3)
    NonAsciiAddress = 607,          // x.6.7 non-ASCII address without SMTPUTF8 (RFC 6531 3.5)
    OtherSecurity = 700,            // x.7.0 other or undefined security status
    DeliveryNotAuthorized = 701,    // x.7.1 delivery not authorized, message refused
    AuthCredentialsInvalid = 708,   // x.7.8 authentication credentials invalid (RFC 4954)
    AuthMechanismWeak = 709,        // x.7.9 authentication mechanism is too weak (RFC 4954)
    EncryptionNeeded = 710,         // x.7.10 encryption needed (RFC 5248; REQUIRETLS outside TLS, RFC 8689 4)
    EncryptionRequired = 711,       // x.7.11 encryption required (RFC 5248)
    RequireTlsNotMet = 730,         // x.7.30 REQUIRETLS support required (RFC 8689 5)
};

// "2.1.5" for (250, DestinationValid); "" for Enhanced::None or a code outside 2xx/4xx/5xx.
std::string formatEnhanced(int code, Enhanced enh);

// RFC 5321 4.5.3.1.5: the longest reply line, with its CRLF.
inline constexpr std::size_t MaxReplyLine = 512;

// One SMTP reply, possibly multi-line. Value type; format() renders it for the wire.
struct Reply {
    int code = 451;                     // fail closed: a default Reply is a temporary failure
    Enhanced enh = Enhanced::OtherSystem;
    std::vector<std::string> lines;     // text of each line; at least one (may be empty text)

    Reply() = default;
    Reply(int code, Enhanced enh, std::string text);
    Reply(int code, Enhanced enh, std::vector<std::string> lines);
    Reply(int code, Enhanced enh, std::initializer_list<std::string> lines);

    bool isPositive() const { return code >= 200 && code < 400; }
    bool isTransient() const { return code >= 400 && code < 500; }   // 4xx: try later
    bool isPermanent() const { return code >= 500; }                  // 5xx: give up
    // The first line's text (for logs).
    const std::string& text() const;

    // Wire form: every line "code-" except the last "code "; each line gets the enhanced
    // code when enhancedCodes is true (RFC 2034 4: each line of a multi-line reply).
    // CR and LF inside texts are replaced by spaces so a text can never inject a line; a
    // line longer than MaxReplyLine is cut there (at a UTF-8 character boundary).
    // E.g. {250, None, {"mx.example", "PIPELINING", "SIZE 10240000"}}.format(true) ==
    //   "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"
    std::string format(bool enhancedCodes) const;
};

bool operator==(const Reply& a, const Reply& b);

// The replies a session needs, so no one writes code strings by hand. Texts are generic
// (STYLE: detail goes to the log, not to the client).
namespace replies {
Reply greeting(std::string_view hostname);           // 220 <host> ESMTP Postern
Reply closing(std::string_view hostname);            // 221 2.0.0 <host> closing connection
Reply serviceUnavailable(std::string_view hostname); // 421 4.3.2 <host> Service not available, closing
Reply tooBusy();                                     // 421 4.3.2 Too many connections, try later
Reply timeout();                                     // 421 4.4.2 Timeout, closing connection
Reply ok();                                          // 250 2.0.0 Ok
Reply senderOk();                                    // 250 2.1.0 Ok
Reply recipientOk();                                 // 250 2.1.5 Ok
Reply queued(std::string_view queueId);              // 250 2.0.0 Ok: queued as <id>
Reply helo(std::string_view hostname);               // 250 <host>
// 250 multi-line: hostname first, then one keyword per line (no enhanced codes).
Reply ehlo(std::string_view hostname, const std::vector<std::string>& keywords);
Reply startMailInput();                              // 354 End data with <CR><LF>.<CR><LF>
Reply readyToStartTls();                             // 220 2.0.0 Ready to start TLS
Reply authSucceeded();                               // 235 2.7.0 Authentication successful
Reply authChallenge(std::string_view base64);        // 334 <challenge> (never enhanced)
Reply cannotVerify();                                // 252 2.0.0 Cannot VRFY user, but will accept message
Reply help();                                        // 214 2.0.0 See RFC 5321
Reply badSequence(std::string_view detail);          // 503 5.5.1 Error: <detail>
Reply needMailFirst();                               // 503 5.5.1 Error: need MAIL command
Reply needRcptFirst();                               // 503 5.5.1 Error: need RCPT command
Reply nestedMail();                                  // 503 5.5.1 Error: nested MAIL command
Reply needHelo();                                    // 503 5.5.1 Error: send HELO/EHLO first
Reply commandNotImplemented();                       // 502 5.5.1 Command not implemented
Reply tooManyRecipients();                           // 452 4.5.3 Too many recipients
Reply tooManyErrors();                               // 421 4.7.0 Too many errors, closing
Reply tempFailure();                                 // 451 4.3.0 Temporary failure, try again later
Reply queueFull();                                   // 452 4.3.1 Insufficient system storage
Reply messageTooBig();                               // 552 5.3.4 Message size exceeds fixed limit
Reply bareLineEnding();                              // 554 5.6.0 Message contains bare CR or LF
Reply lineTooLong();                                 // 554 5.6.0 Message line too long
Reply authRequired();                                // 530 5.7.0 Authentication required
Reply tlsRequired();                                 // 530 5.7.0 Must issue a STARTTLS command first
Reply authInvalid();                                 // 535 5.7.8 Authentication credentials invalid
Reply authTempFailure();                             // 454 4.7.0 Temporary authentication failure
Reply authCancelled();                               // 501 5.0.0 Authentication cancelled
Reply authAlreadyDone();                             // 503 5.5.1 Error: already authenticated
Reply authMechanismUnknown();                        // 504 5.5.4 Unrecognized authentication type
Reply tlsNotAvailable();                             // 454 4.7.0 TLS not available due to temporary reason
Reply relayDenied();                                 // 554 5.7.1 Relay access denied
Reply userUnknown();                                 // 550 5.1.1 User unknown
}  // namespace replies

}  // namespace postern::smtp
