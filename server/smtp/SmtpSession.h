// The SMTP server state machine (RFC 5321, 1870, 2920, 3207, 4954, 6152, 2034, 6409,
// 3030 CHUNKING/BINARYMIME, 9422 LIMITS):
// command lines and DATA bytes in, reply bytes and actions out. No sockets, no files,
// no SQL: it asks the core ports and maps each answer to a reply.
#pragma once

#include "core/AuthService.h"
#include "core/ClientAddress.h"
#include "core/GrantStore.h"
#include "core/MailboxUsage.h"
#include "core/EventCounters.h"
#include "core/MessageSink.h"
#include "core/MilterPort.h"
#include "core/OutboundLimiter.h"
#include "core/AccountSecurity.h"
#include "core/PolicyDelegate.h"
#include "core/UserDirectory.h"
#include "policy/RoleAddressPolicy.h"
#include "sasl/SaslExchange.h"
#include "smtpproto/DataReader.h"
#include "smtpproto/ReplyCode.h"
#include "smtpproto/SmtpCommand.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::smtp {

enum class Role { Mx, Submission };

struct SmtpSettings {
    // Every key's one default lives in the key table (server/config/ConfigSchema.cpp);
    // app/ModuleSettings.cpp fills every field from the loaded config. The members are
    // value-initialised so a forgotten copy shows up as 0/empty, not as a second default.
    std::string hostname;             // set from server.hostname (empty there = system host name)
    Role role{};                      // set from listener.<name>.role
    bool tlsAvailable = false;        // listener has a certificate and speaks STARTTLS
    bool allowPlaintextAuth = false;  // set from smtp.allow_plaintext_auth: offer AUTH before TLS
    std::uint64_t maxMessageSize = 0; // set from smtp.max_message_size
    std::size_t maxRecipients = 0;    // set from smtp.max_recipients
    std::size_t maxCommandLength = 0; // set from smtp.max_command_length
    std::size_t maxLineLength = 0;    // set from smtp.max_line_length
    std::uint64_t maxHeaderSize = 0;  // set from smtp.max_header_size
    int maxErrors = 0;                // set from smtp.max_errors
    std::size_t maxHops = 50;         // set from smtp.max_hops: Received fields that refuse a message (554 5.4.6)
    std::size_t maxJunkCommands = 0;  // set from smtp.max_junk_commands (0 = no limit)
    std::size_t maxRecipientOvershoot = 1000;  // set from smtp.max_recipient_overshoot
    bool addMissingHeaders = false;   // set from smtp.add_missing_headers: submission Date / Message-ID (RFC 6409 8.2, 8.3)
    bool grantOwnSendersOnly = false; // set from pop_before_smtp.own_senders_only: relay on a grant only as its holder
    bool quotaFullTempFail = false;   // set from smtp.quota_full_tempfail: a full mailbox is 452 4.2.2, not 552 5.2.2
    policy::RoleAddresses roles;      // smtp.postmaster_address / smtp.abuse_address
    // smtp.max_transactions_per_session: MAIL commands accepted per session, advertised as
    // LIMITS MAILMAX (RFC 9422); 0 = no limit (and no MAILMAX).
    std::size_t maxTransactions = 0;

    bool operator==(const SmtpSettings&) const = default;
};

struct SmtpPorts {
    core::AuthService& auth;
    core::UserDirectory& directory;
    core::GrantStore* grants;  // nullptr: POP-before-SMTP off
    core::MessageSink& sink;
    core::OutboundLimiter* limiter = nullptr;  // nullptr: no outbound rate limits
    core::EventCounters* events = nullptr;     // nullptr: nothing counted
    core::PolicyDelegate* delegate = nullptr;  // nullptr: no policy delegation
    core::MilterSession* milter = nullptr;     // nullptr: no milters on this listener
    const core::AccountHold* hold = nullptr;   // nullptr: no compromised-account holds
    const core::MailboxUsage* usage = nullptr; // nullptr: mailbox quotas not enforced
};

struct SmtpOutput {
    enum class Action { None, StartTls, Close };
    std::string bytes;  // replies to send (CRLF-terminated)
    Action action = Action::None;
};

// Where a session is in RFC 5321's command sequence (4.1.4, 4.3.2). AUTH in progress and
// STARTTLS are not states of their own: a SASL exchange is held apart (sasl_), and STARTTLS
// returns the session to Connected.
enum class SmtpState {
    Connected,  // greeting sent; EHLO/HELO expected
    Greeted,    // EHLO/HELO done, no transaction
    Mail,       // MAIL accepted, no recipient yet
    Rcpt,       // at least one recipient accepted
    Data,       // receiving message data (bytes go to onData)
    Bdat,       // RFC 3030: BDAT chunks accepted, no LAST yet (only BDAT, RSET and the
                // session commands; DATA, MAIL, RCPT are out of sequence)
    Chunk,      // reading the octets of one BDAT chunk (bytes go to onData)
    Closed,     // the last reply said goodbye
};
const char* stateName(SmtpState state);

// One SMTP session. Not thread-safe: owned by its connection thread.
class SmtpSession {
public:
    // `now` gives the clock for Received/Date headers (tests pass a fixed one).
    SmtpSession(const SmtpSettings& settings, SmtpPorts ports, std::string sessionId,
                core::ClientAddress client, bool tls,
                std::function<std::chrono::system_clock::time_point()> now = std::chrono::system_clock::now);
    ~SmtpSession();

    SmtpOutput greeting();
    // One command line without its CRLF (or a SASL response line during AUTH).
    SmtpOutput onLine(std::string_view line);
    // The command line passed the line limit (the rest of it is not read): 500 5.5.6 and
    // the session ends.
    SmtpOutput onLineTooLong();
    // True while message data is expected: feed raw bytes to onData, not lines.
    bool inData() const { return state_ == SmtpState::Data || state_ == SmtpState::Chunk; }
    // Feeds DATA bytes or the octets of a BDAT chunk; returns how many were consumed (the
    // rest are the next pipelined commands). When the end-of-data mark is seen or the chunk
    // is complete, the reply is in `out`.
    std::size_t onData(const char* bytes, std::size_t size, SmtpOutput& out);
    // After a successful STARTTLS handshake (RFC 3207 4.2: forget everything).
    void onTlsStarted();
    SmtpOutput onTimeout();
    SmtpOutput onShutdown();
    bool isClosed() const { return state_ == SmtpState::Closed; }
    // Closed by the client's QUIT (221), not by a refusal of ours (421, a milter's 554...).
    bool closedByQuit() const { return closedByQuit_; }
    SmtpState state() const { return state_; }
    bool isTls() const { return tls_; }
    // The TLS version for the login log (after the handshake; default "yes").
    void setTlsVersion(std::string version) { tlsVersion_ = std::move(version); }
    const std::string& sessionId() const { return sessionId_; }
    // The address the client connected to (the policy service's server_address /
    // server_port, the milters' {daemon_addr}): from the PROXY header behind a balancer.
    void setServerAddress(std::string host, std::uint16_t port) {
        serverHost_ = std::move(host);
        serverPort_ = port;
    }

    // Milter macros the session cannot know itself ({daemon_name}, TLS), and the TLS facts
    // of the policy service (encryption_protocol / _cipher / _keysize).
    void setMilterInfo(std::string listener, std::string tlsVersion, std::string cipher, int cipherBits = 0) {
        milterListener_ = std::move(listener);
        milterTlsVersion_ = std::move(tlsVersion);
        milterCipher_ = std::move(cipher);
        cipherBits_ = cipherBits;
    }

private:
    struct Transaction;
    struct DataState;
    struct ChunkState;

    SmtpOutput reply(const Reply& r, SmtpOutput::Action action = SmtpOutput::Action::None);
    SmtpOutput error(const Reply& r);  // counts towards maxErrors
    SmtpOutput countError(SmtpOutput out);  // the same for an answer already made
    SmtpOutput authRefused(std::string_view reason, const Reply& r);  // logged, then error()
    // Command handlers, dispatched from one table (SmtpSession.cpp: Commands) that says in
    // which states each verb is allowed and what a client gets out of sequence. Each command
    // line is parsed once, in onLine.
    SmtpOutput handleEhlo(const Command& cmd);
    SmtpOutput handleHelo(const Command& cmd);
    SmtpOutput greet(std::string_view arg, bool extended);
    SmtpOutput handleMail(const Command& cmd);
    SmtpOutput handleRcpt(const Command& cmd);
    SmtpOutput handleData(const Command& cmd);
    SmtpOutput handleRset(const Command& cmd);
    SmtpOutput handleNoop(const Command& cmd);
    SmtpOutput handleVrfy(const Command& cmd);
    SmtpOutput handleHelp(const Command& cmd);
    SmtpOutput handleQuit(const Command& cmd);
    SmtpOutput handleStartTls(const Command& cmd);
    SmtpOutput handleAuth(const Command& cmd);
    SmtpOutput handleBdat(const Command& cmd);
    struct CommandRule;
    static const CommandRule* ruleFor(Verb verb);
    SmtpOutput continueAuth(std::string_view line);
    SmtpOutput finishAuth(const sasl::Step& step);
    SmtpOutput finishData();
    // Opens the sink for the message and writes the Received header (DATA and first BDAT);
    // on failure the transaction is reset and the reply (451/452) returned.
    std::optional<Reply> openMessage();
    // Message content after the Received header (DATA: unstuffed; BDAT: as sent): the
    // header section is held back to its end (size limit; Date / Message-ID on submission).
    void writeContent(const char* p, std::size_t n);
    // Makes the message durable (MessageWriter::commit) and answers 250 only then.
    SmtpOutput commitMessage(std::unique_ptr<DataState> d, std::uint64_t size);
    std::size_t onChunk(const char* bytes, std::size_t size, SmtpOutput& out);
    SmtpOutput finishChunk();
    std::vector<std::string> ehloKeywords() const;
    void resetTransaction();
    void noteRecipientDsn(const Command& cmd, std::size_t localMailboxes, const std::vector<std::string>& forwards);
    void writeData(DataState& ds, const char* p, std::size_t n);
    // Ends the held header section at `end` (its empty line, or all of it for a message
    // without body): Return-Path dropped, hops counted, Date / Message-ID added on
    // submission, then the rest written.
    void finishHeaders(DataState& ds, std::size_t end);
    std::string receivedHeader() const;
    // SMTPUTF8 / REQUIRETLS checks of MAIL and RCPT (nullopt: go on).
    std::optional<Reply> mailExtensionRefusal(const Command& cmd) const;
    std::optional<Reply> rcptExtensionRefusal(const Command& cmd) const;
    std::string protocolKeyword() const;
    void count(std::string_view event, std::string_view label) {
        if (ports_.events) ports_.events->count(event, label);
    }
    bool authAllowed() const { return tls_ || settings_.allowPlaintextAuth; }

    const SmtpSettings& settings_;
    SmtpPorts ports_;
    std::string sessionId_;
    core::ClientAddress client_;
    bool tls_;
    std::string tlsVersion_ = "yes";  // login log: the version when tls_
    std::function<std::chrono::system_clock::time_point()> now_;

    // Session state (RFC 5321 4.1.4): reset by STARTTLS, not by RSET.
    SmtpState state_ = SmtpState::Connected;
    bool extended_ = false;       // EHLO vs HELO (for the Received protocol keyword)
    bool enhancedCodes_ = false;  // the current EHLO advertised ENHANCEDSTATUSCODES (RFC 2034)
    std::string heloName_;
    std::optional<core::AuthIdentity> identity_;
    std::string saslMethod_;      // mechanism of the successful AUTH (policy service's sasl_method)
    std::string serverHost_;
    std::uint16_t serverPort_ = 0;
    std::unique_ptr<sasl::SaslExchange> sasl_;
    int errors_ = 0;
    bool closedByQuit_ = false;
    std::size_t junkCommands_ = 0;  // NOOP, RSET, VRFY, HELP, HELO, EHLO since the last accepted message
    unsigned transactions_ = 0;
    std::size_t mailCommands_ = 0;  // MAIL commands accepted (LIMITS MAILMAX; the policy service's instance)

    // Milters (SmtpMilter.cpp): the facts they are told; a refusal at connect or HELO is
    // the answer to every MAIL of the session.
    core::MilterFacts milterFacts() const;
    std::optional<Reply> milterReply(const core::MilterVerdict& v, std::string_view stage) const;
    // End of message: the milters see the buffered message; their actions are applied to
    // the envelope and content. nullopt: go on and store; a reply: the answer (refusal).
    std::optional<Reply> runMilters(DataState& d, core::Envelope& env, std::string& content);
    std::optional<Reply> milterSessionRefusal_;
    std::string milterListener_, milterTlsVersion_, milterCipher_;
    int cipherBits_ = 0;

    std::unique_ptr<Transaction> txn_;  // from MAIL to end of DATA / RSET
    std::unique_ptr<DataState> data_;   // while receiving message data
    std::unique_ptr<ChunkState> chunk_; // while reading the octets of one BDAT chunk
};

}  // namespace postern::smtp
