// SMTP command line parser: verb, MAIL/RCPT paths and ESMTP parameters (RFC 5321 4.1.1,
// 4.1.2 esmtp-param, 4.5.3.1.4 line limit; RFC 1870 SIZE, RFC 6152 BODY, RFC 4954 AUTH=).
#pragma once

#include "core/DsnRequest.h"
#include "smtpproto/ReplyCode.h"
#include "smtpproto/SmtpAddress.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::smtp {

enum class Verb { Helo, Ehlo, Mail, Rcpt, Data, Rset, Noop, Quit, Vrfy, Help, StartTls, Auth, Bdat, Unknown };

// Upper-case name of a verb ("STARTTLS"; "UNKNOWN" for Unknown), for logs.
const char* verbName(Verb verb);

enum class BodyType {
    Unspecified,   // no BODY= parameter (7BIT by RFC 6152 3)
    SevenBit,      // BODY=7BIT
    EightBitMime,  // BODY=8BITMIME (RFC 6152)
    BinaryMime,    // BODY=BINARYMIME (RFC 3030 3; only with BDAT)
};

// Why a line was refused; Command::errorReply() is the reply to send.
enum class CommandError {
    None,
    LineTooLong,         // 500 5.5.2 Line too long (RFC 5321 4.5.3.1.4; AUTH: 5.5.6, RFC 4954 6)
    BadCharacter,        // 500 5.5.2 Syntax error: NUL, CR, LF or other control octet in the line
    UnknownCommand,      // 500 5.5.1 Command unrecognized
    Syntax,              // 501 5.5.2 Syntax error (MAIL without "FROM:", junk after the path, ...)
    BadArguments,        // 501 5.5.4 Syntax: <usage> (argument missing, or given where none allowed)
    BadSenderAddress,    // 501 5.1.7 Bad sender address syntax (ParsedPath error in MAIL)
    BadRecipientAddress, // 501 5.1.3 Bad recipient address syntax (ParsedPath error in RCPT)
    BadParamValue,       // 501 5.5.4 Bad parameter value (SIZE=abc, BODY=x, bad xtext, duplicate)
    UnknownParam,        // 555 5.5.4 Unsupported parameter (RFC 5321 4.1.1.11)
    NeedsSmtpUtf8,       // 553 5.6.7 non-ASCII address without the SMTPUTF8 parameter (RFC 6531 3.5)
};

struct CommandOptions {
    // RFC 5321 4.5.3.1.4: 512 octets including the verb and CRLF.
    std::size_t maxLineLength = 512;
    // RFC 4954 4: an AUTH command line (with initial response) may be 12288 octets.
    std::size_t maxAuthLineLength = 12288;
    // SMTPUTF8 (RFC 6531) is advertised: MAIL may carry SMTPUTF8 and UTF-8 local parts.
    bool smtpUtf8 = false;
    // DSN (RFC 3461) is advertised: MAIL takes RET/ENVID, RCPT takes NOTIFY/ORCPT.
    bool dsn = true;
};

// One parsed command. ok() false: send errorReply() and keep the session state unchanged.
struct Command {
    Verb verb = Verb::Unknown;
    CommandError error = CommandError::UnknownCommand;  // fail closed
    std::string detail;    // why (for the log), e.g. the ParsedPath message or the parameter name

    // HELO/EHLO: the client's name (one token); VRFY/HELP/NOOP: the argument text as sent.
    std::string argument;
    // MAIL/RCPT: the parsed path (ok == true whenever the command is ok).
    ParsedPath path;
    // MAIL parameters.
    std::optional<std::uint64_t> size;  // SIZE=; saturates at UINT64_MAX on overflow (-> 552)
    BodyType body = BodyType::Unspecified;
    std::optional<std::string> authParam;  // AUTH= value as sent (xtext or "<>"); ignored by us
    bool smtpUtf8 = false;                 // SMTPUTF8 parameter present (only with options.smtpUtf8)
    core::MessageDsn dsn;                  // MAIL: RET=, ENVID= (smtpproto/DsnParams.h)
    // RCPT parameters.
    core::RecipientDsn rcptDsn;            // NOTIFY=, ORCPT=
    bool requireTls = false;               // REQUIRETLS parameter present (RFC 8689 4; the session
                                           // refuses it outside TLS)
    // AUTH: mechanism as sent (compare case-insensitively) and optional initial response.
    std::string authMechanism;
    std::optional<std::string> authInitialResponse;
    // BDAT (RFC 3030 2): chunk-size octets follow the line; LAST ends the message. A size
    // of more than 20 digits or beyond UINT64_MAX is BadArguments.
    std::uint64_t chunkSize = 0;
    bool lastChunk = false;

    bool ok() const { return error == CommandError::None; }
    // The reply for `error` (see CommandError); replies::ok() when ok().
    Reply errorReply() const;
};

// Parses one command line without its CRLF. Never throws.
//  - verbs are case-insensitive; "MAIL FROM:" / "RCPT TO:" case-insensitive, one optional
//    space before "<" tolerated;
//  - HELO/EHLO: any single token without spaces or control characters (lenient, as Postfix);
//  - MAIL: SIZE=digits, BODY=7BIT|8BITMIME|BINARYMIME, AUTH=xtext|<>, SMTPUTF8 (when enabled),
//    REQUIRETLS (no value; whether TLS is active is the session's question), RET= and ENVID=
//    (when options.dsn); any other keyword -> UnknownParam; RCPT: NOTIFY= and ORCPT= (when
//    options.dsn), any other -> UnknownParam;
//  - BDAT: chunk-size (1*DIGIT) [SP "LAST"] (RFC 3030 2; LAST case-insensitive), else
//    BadArguments (501 5.5.4);
//  - DATA, RSET, QUIT, STARTTLS take no argument (BadArguments); NOOP ignores its argument
//    (RFC 5321 4.1.1.9); VRFY needs one; HELP's is optional; AUTH needs a mechanism.
Command parseCommand(std::string_view line, const CommandOptions& options = {});

}  // namespace postern::smtp
