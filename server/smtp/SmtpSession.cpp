#include "smtp/SmtpSession.h"

#include "core/EventLine.h"
#include "core/Utf8.h"

#include "policy/RelayPolicy.h"
#include "policy/TransactionPolicy.h"
#include "smtpproto/LineCheck.h"
#include "smtpproto/SmtpCommand.h"

#include <Poco/Logger.h>
#include <Poco/RandomStream.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <set>

namespace postern::smtp {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.smtp"); }

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
            return false;
    return true;
}

// A field line of that name (lower case, without the colon): blanks may stand between the
// name and the colon (RFC 5322 4.5 obs-optional; Postfix's is_header() accepts them too).
bool isField(std::string_view line, std::string_view name) {
    if (!startsWithNoCase(line, name)) return false;
    std::size_t i = name.size();
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    return i < line.size() && line[i] == ':';
}

// What finishHeaders needs to know of a header section, from one pass over its line starts.
struct HeaderFacts {
    // Received fields: the hops the message has made (RFC 5321 6.3: a loop shows as a growing
    // count; Postfix's hopcount_limit).
    std::size_t received = 0;
    bool returnPath = false;
    bool date = false;
    bool messageId = false;
};

HeaderFacts headerFacts(std::string_view headers) {
    HeaderFacts f;
    for (std::size_t pos = 0; pos < headers.size();) {
        const std::string_view l = headers.substr(pos);
        if (isField(l, "received")) ++f.received;
        else if (isField(l, "return-path")) f.returnPath = true;
        else if (isField(l, "date")) f.date = true;
        else if (isField(l, "message-id")) f.messageId = true;
        auto nl = headers.find("\r\n", pos);
        if (nl == std::string_view::npos) break;
        pos = nl + 2;
    }
    return f;
}

// The header section without Return-Path fields (and their continuation lines): the client's
// has no meaning (RFC 5321 4.4: the originator SHOULD NOT send one, final delivery writes its
// own from MAIL FROM) and would stand below ours, forged (Postfix's message_drop_headers).
std::string withoutReturnPath(std::string_view headers) {
    std::string kept;
    kept.reserve(headers.size());
    bool dropping = false;
    for (std::size_t pos = 0; pos < headers.size();) {
        auto nl = headers.find("\r\n", pos);
        const std::size_t next = nl == std::string::npos ? headers.size() : nl + 2;
        const std::string_view line = headers.substr(pos, next - pos);
        const bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
        if (!continuation) dropping = isField(line, "return-path");
        if (!dropping) kept.append(line);
        pos = next;
    }
    return kept;
}

// RFC 5322 3.3 date-time in UTC: "Fri, 27 Nov 2026 21:37:52 +0000".
std::string rfc5322Date(std::chrono::system_clock::time_point tp) {
    std::time_t t = std::chrono::system_clock::to_time_t(tp);
    std::tm tm{};
    gmtime_r(&t, &tm);
    static const char* const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char* const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return buf;
}

std::string randomHex(std::size_t bytes) {
    std::string raw(bytes, '\0');
    Poco::RandomInputStream rnd;
    rnd.read(raw.data(), static_cast<std::streamsize>(bytes));
    static const char* const hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : raw) {
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    return out;
}

// "s=<session> event=<name> ip=<client>": the head of every session line (DESIGN: Logging);
// the details are added through core::EventLine, which escapes every value.
core::EventLine clientLine(const std::string& sessionId, std::string_view event, const core::ClientAddress& client) {
    core::EventLine l = core::EventLine::inSession(sessionId, event);
    l.add("ip", client.host());
    return l;
}

// ... then from=<sender> user=<authenticated user or "-">: a line about one transaction.
core::EventLine transactionLine(const std::string& sessionId, std::string_view event,
                                const core::ClientAddress& client, std::string_view sender, std::string_view user) {
    core::EventLine l = clientLine(sessionId, event, client);
    l.address("from", sender).add("user", user);
    return l;
}

std::string replyText(const Reply& r) { return std::to_string(r.code) + " " + r.text(); }

// Strips CR/LF/control characters from client-supplied text before it goes into a
// header (a HELO name must not be able to add header lines).
std::string sanitize(std::string_view s, std::size_t max = 255) {
    std::string out;
    for (char c : s.substr(0, max)) {
        unsigned char u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? '?' : c;
    }
    return out;
}

// DISCARD from the policy service: the message is read and checked like any other, then
// dropped; the client gets the usual 250 with an id to quote.
class DiscardWriter : public core::MessageWriter {
public:
    bool write(const char*, std::size_t) override { return true; }
    core::SinkResult commit() override { return {core::SinkStatus::Ok, randomHex(8)}; }
};

// Milters: the message is held in memory (at most smtp.max_message_size) until they have
// seen it; nothing is opened in the store or the queue before that.
class BufferWriter : public core::MessageWriter {
public:
    bool write(const char* p, std::size_t n) override {
        bytes.append(p, n);
        return true;
    }
    core::SinkResult commit() override { return {}; }  // never committed: the content is taken
    std::string bytes;
};

}  // namespace

// Per-message data, apart from the session (OpenSMTPD): exists from MAIL to the end of
// DATA or RSET, so no envelope state can leak into the next transaction.
struct SmtpSession::Transaction {
    ParsedPath sender;
    std::vector<std::string> recipients;       // distinct forward-paths accepted (for logs / Received)
    std::size_t accepted = 0;                  // RCPT commands accepted (the limit counts these)
    std::vector<std::string> localMailboxes;   // deduplicated
    std::vector<std::string> remoteRecipients; // deduplicated
    std::set<std::string> seenMailboxes;
    std::set<std::string> seenRemote;
    bool relayedByGrant = false;
    std::vector<std::string> grantOwns;        // the grant's user and its MAIL FROM addresses (DKIM)
    std::string grantUser;                     // the POP3 user of the grant relayed on
    bool grantMessageCounted = false;          // a grant relay's message counted against the client IP
    std::size_t overshoot = 0;                 // RCPT refused past smtp.max_recipients
    core::MessageDsn dsn;                                    // RET/ENVID of MAIL
    std::map<std::string, core::RecipientDsn> remoteDsn;     // NOTIFY/ORCPT by forward-path
    std::vector<std::pair<std::string, core::RecipientDsn>> localSuccessDsn;
    std::uint64_t declaredSize = 0;            // MAIL FROM SIZE=
    std::string instance;                      // policy service: same for every RCPT of this transaction
    // What the policy service asked for (whole message, as in Postfix): headers to prepend
    // (each once), hold the queued copy, or accept and discard.
    std::vector<std::string> prepend;
    bool hold = false;
    std::string holdReason;
    bool discard = false;
    std::string discardReason;
    bool binaryMime = false;                   // MAIL BODY=BINARYMIME: only BDAT (RFC 3030 3)
    bool smtpUtf8 = false;    // MAIL ... SMTPUTF8 (RFC 6531)
    bool requireTls = false;  // MAIL ... REQUIRETLS (RFC 8689)
    // Milters: each accepted RCPT address with what it expanded to (mailboxes, forwards),
    // so that a milter's delete/add recipient can rebuild the envelope.
    std::vector<std::pair<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>> rcptTargets;
};

struct SmtpSession::DataState {
    core::MessageWriterPtr writer;
    DataReader reader;
    // The header section is held back until its end so that missing Date / Message-ID
    // can be added on submission (RFC 6409 8) and its size limited.
    bool inHeaders = true;
    bool headerTooBig = false;
    std::string headerBuf;
    bool writeFailed = false;
    std::uint64_t chunkBytes = 0;  // BDAT: octets of content received so far
    bool chunkTooBig = false;      // BDAT: more than maxMessageSize
    char lastTwo[2] = {0, 0};      // BDAT: the last two octets of content (a missing final CRLF)
    std::size_t hops = 0;          // Received fields in the client's header section
    // BDAT without BODY=BINARYMIME: CRLF lines within smtp.max_line_length (RFC 3030 3), as
    // DataReader checks for DATA. Unset for DATA and for BINARYMIME.
    std::optional<LineCheck> lines;
    // Milters: the message is held here (not in the sink) until they have seen it; the
    // sink is opened with `envelope` (as the milters changed it) at the end.
    core::Envelope envelope;
    std::string* buffer = nullptr;  // owned by `writer` (a BufferWriter) when set

    explicit DataState(const DataReaderLimits& limits) : reader(limits) {}
};

// The BDAT chunk being read (RFC 3030 2): its octets are consumed whatever the answer, so
// the session stays in sync with a client that pipelined them behind the command.
struct SmtpSession::ChunkState {
    std::uint64_t size = 0;          // chunk-size as sent
    std::uint64_t left = 0;          // octets still to read
    bool last = false;               // BDAT ... LAST
    std::optional<Reply> refusal;    // the chunk is read and dropped, then this is the answer
    SmtpState returnTo = SmtpState::Greeted;  // state after a refused chunk
};

SmtpSession::SmtpSession(const SmtpSettings& settings, SmtpPorts ports, std::string sessionId,
                         core::ClientAddress client, bool tls,
                         std::function<std::chrono::system_clock::time_point()> now)
    : settings_(settings), ports_(ports), sessionId_(std::move(sessionId)), client_(std::move(client)), tls_(tls),
      now_(std::move(now)) {}

SmtpSession::~SmtpSession() = default;

SmtpOutput SmtpSession::reply(const Reply& r, SmtpOutput::Action action) {
    SmtpOutput out;
    out.bytes = r.format(enhancedCodes_);
    // RFC 5321 3.8: after 421 the server closes the channel, whoever chose the reply (a
    // milter or the policy service too, as Postfix does).
    if (r.code == 421) action = SmtpOutput::Action::Close;
    out.action = action;
    if (action == SmtpOutput::Action::Close) state_ = SmtpState::Closed;
    return out;
}

SmtpOutput SmtpSession::error(const Reply& r) { return countError(reply(r)); }

SmtpOutput SmtpSession::countError(SmtpOutput out) {
    // A client that keeps sending bad commands is either broken or probing: cut it off
    // (as Postfix's smtpd_hard_error_limit does).
    if (++errors_ >= settings_.maxErrors) {
        logger().notice(clientLine(sessionId_, "smtp.too_many_errors", client_).add("junk", junkCommands_).str());
        out.bytes += replies::tooManyErrors().format(enhancedCodes_);
        out.action = SmtpOutput::Action::Close;
        state_ = SmtpState::Closed;
    }
    return out;
}

SmtpOutput SmtpSession::greeting() {
    if (ports_.milter) milterSessionRefusal_ = milterReply(ports_.milter->connect(milterFacts()), "connect");
    return reply(replies::greeting(settings_.hostname));
}

SmtpOutput SmtpSession::onTimeout() {
    logger().information(clientLine(sessionId_, "smtp.timeout", client_).add("phase", data_ ? "data" : "command").str());
    data_.reset();  // an unfinished message is discarded, never delivered
    chunk_.reset();
    return reply(replies::timeout(), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::onShutdown() {
    data_.reset();
    chunk_.reset();
    return reply(replies::serviceUnavailable(settings_.hostname), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::onLineTooLong() {
    // A line past the limit (a flood, or a client that never sends CRLF) ends the session:
    // the rest of it is never read, so nothing after it can be trusted to be a command.
    // x.5.6 is registered for an AUTH exchange's line (RFC 4954 4); a command line is a
    // syntax error, x.5.2, as parseCommand answers one over smtp.max_command_length.
    const bool inAuth = sasl_ != nullptr;
    sasl_.reset();
    data_.reset();
    logger().notice(clientLine(sessionId_, "smtp.line_too_long", client_).add("auth", inAuth ? "yes" : "no").str());
    return reply(Reply(500, inAuth ? Enhanced::LineTooLong : Enhanced::SyntaxError, "Line too long"),
                 SmtpOutput::Action::Close);
}

// One row per verb: the handler, the states in which the verb is in sequence, and what an
// out-of-sequence client is told (RFC 5321 4.3.2). `sequenceFirst`: a syntax error of this
// verb is answered with the sequence error when both apply (503 before 501: MAIL, RCPT).
struct SmtpSession::CommandRule {
    Verb verb;
    SmtpOutput (SmtpSession::*handler)(const Command&);
    unsigned allowed;  // bit set of SmtpState
    Reply (*outOfSequence)(SmtpState);
    bool sequenceFirst;
    bool junk = false;  // counts towards smtp.max_junk_commands (NOOP, RSET, VRFY, HELP, HELO/EHLO)
};

namespace {

constexpr unsigned bit(SmtpState s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned AnyState = bit(SmtpState::Connected) | bit(SmtpState::Greeted) | bit(SmtpState::Mail) |
                              bit(SmtpState::Rcpt) | bit(SmtpState::Bdat);

Reply noSequenceError(SmtpState) { return replies::badSequence("Bad sequence of commands"); }
Reply mailSequence(SmtpState s) { return s == SmtpState::Connected ? replies::needHelo() : replies::nestedMail(); }
Reply dataSequence(SmtpState s) {
    // RFC 3030 2: DATA and BDAT must not be mixed in one transaction.
    if (s == SmtpState::Bdat) return replies::badSequence("DATA not allowed after BDAT");
    return s == SmtpState::Mail ? replies::needRcptFirst() : replies::needMailFirst();
}
Reply rcptSequence(SmtpState s) {
    return s == SmtpState::Bdat ? replies::badSequence("RCPT not allowed after BDAT") : replies::needMailFirst();
}
Reply outsideTransaction(SmtpState s) {
    // RFC 4954 4: AUTH is not permitted during a mail transaction. STARTTLS neither, as in
    // Postfix: RFC 3207 4.2 would discard the transaction (and the milters' view of it).
    return s == SmtpState::Connected ? replies::needHelo() : replies::badSequence("MAIL transaction in progress");
}

}  // namespace

const SmtpSession::CommandRule* SmtpSession::ruleFor(Verb verb) {
    static const CommandRule Commands[] = {
        {Verb::Ehlo, &SmtpSession::handleEhlo, AnyState, noSequenceError, false, true},
        {Verb::Helo, &SmtpSession::handleHelo, AnyState, noSequenceError, false, true},
        {Verb::Mail, &SmtpSession::handleMail, bit(SmtpState::Greeted), mailSequence, true},
        {Verb::Rcpt, &SmtpSession::handleRcpt, bit(SmtpState::Mail) | bit(SmtpState::Rcpt), rcptSequence, true},
        {Verb::Data, &SmtpSession::handleData, bit(SmtpState::Rcpt), dataSequence, false},
        {Verb::Rset, &SmtpSession::handleRset, AnyState, noSequenceError, false, true},
        {Verb::Noop, &SmtpSession::handleNoop, AnyState, noSequenceError, false, true},
        {Verb::Vrfy, &SmtpSession::handleVrfy, AnyState, noSequenceError, false, true},
        {Verb::Help, &SmtpSession::handleHelp, AnyState, noSequenceError, false, true},
        {Verb::Quit, &SmtpSession::handleQuit, AnyState, noSequenceError, false},
        {Verb::StartTls, &SmtpSession::handleStartTls, bit(SmtpState::Greeted), outsideTransaction, false},
        {Verb::Auth, &SmtpSession::handleAuth, bit(SmtpState::Greeted), outsideTransaction, false},
        // In every state: out of sequence, the chunk's octets are still read (handleBdat).
        {Verb::Bdat, &SmtpSession::handleBdat, AnyState, noSequenceError, false},
    };
    for (const auto& r : Commands)
        if (r.verb == verb) return &r;
    return nullptr;
}

const char* stateName(SmtpState state) {
    switch (state) {
    case SmtpState::Connected: return "connected";
    case SmtpState::Greeted: return "greeted";
    case SmtpState::Mail: return "mail";
    case SmtpState::Rcpt: return "rcpt";
    case SmtpState::Data: return "data";
    case SmtpState::Bdat: return "bdat";
    case SmtpState::Chunk: return "chunk";
    case SmtpState::Closed: return "closed";
    }
    return "?";
}

SmtpOutput SmtpSession::onLine(std::string_view line) {
    if (state_ == SmtpState::Closed) return {};
    if (sasl_) return continueAuth(line);

    CommandOptions opts;
    opts.maxLineLength = settings_.maxCommandLength;
    // One rule for every ESMTP parameter: taken after HELO as after EHLO, as Postfix does
    // (RFC 5321 4.1.1.11 leaves it to the server). SIZE, BODY, SMTPUTF8 and REQUIRETLS always
    // were; DSN's RET/ENVID/NOTIFY/ORCPT got 555 after HELO alone.
    opts.dsn = true;
    opts.smtpUtf8 = true;
    const Command cmd = parseCommand(line, opts);  // the only parse of this line
    const CommandRule* rule = ruleFor(cmd.verb);
    const bool inSequence = rule && (rule->allowed & bit(state_)) != 0;
    if (!cmd.ok()) {
        if (cmd.verb == Verb::Bdat) {
            // Without a valid chunk-size the octets that follow cannot be told apart from
            // commands: answer and end the session (RFC 3030 2).
            logger().notice(clientLine(sessionId_, "smtp.bdat_syntax", client_).str());
            data_.reset();
            return reply(cmd.errorReply(), SmtpOutput::Action::Close);
        }
        if (rule && rule->sequenceFirst && !inSequence) return error(rule->outOfSequence(state_));
        return error(cmd.errorReply());
    }
    if (!rule) return error(replies::commandNotImplemented());
    if (!inSequence) return error(rule->outOfSequence(state_));
    SmtpOutput out = (this->*rule->handler)(cmd);
    // Past smtp.max_junk_commands every NOOP, RSET, VRFY, HELP, HELO or EHLO also counts as
    // an error (Postfix's smtpd_junk_command_limit): a client that only talks (an EHLO flood,
    // a NOOP every few minutes) is cut off at smtp.max_errors instead of holding its thread
    // for ever. The count starts again after each accepted message.
    if (rule->junk && settings_.maxJunkCommands > 0 && ++junkCommands_ > settings_.maxJunkCommands &&
        state_ != SmtpState::Closed)
        return countError(std::move(out));
    return out;
}

SmtpOutput SmtpSession::handleEhlo(const Command& cmd) { return greet(cmd.argument, true); }
SmtpOutput SmtpSession::handleHelo(const Command& cmd) { return greet(cmd.argument, false); }

SmtpOutput SmtpSession::handleRset(const Command&) {
    resetTransaction();
    return reply(replies::ok());
}
SmtpOutput SmtpSession::handleNoop(const Command&) { return reply(replies::ok()); }
// RFC 5321 3.5.3: 252, no user enumeration.
SmtpOutput SmtpSession::handleVrfy(const Command&) { return reply(replies::cannotVerify()); }
SmtpOutput SmtpSession::handleHelp(const Command&) { return reply(replies::help()); }
SmtpOutput SmtpSession::handleQuit(const Command&) {
    closedByQuit_ = true;
    return reply(replies::closing(settings_.hostname), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::greet(std::string_view arg, bool extended) {
    // RFC 5321 4.1.4: EHLO/HELO in the middle of a session resets it like RSET.
    resetTransaction();
    state_ = SmtpState::Greeted;
    extended_ = extended;
    // RFC 2034: enhanced codes only while the current EHLO has offered them (a HELO after
    // it does not, nor anything before the EHLO that follows STARTTLS).
    enhancedCodes_ = extended;
    heloName_ = sanitize(arg);
    // 8-bit only as valid UTF-8 (a U-label, RFC 6531); other bytes become '?' as Postfix
    // prints them, so the Received header and the log stay well-formed.
    if (!core::isValidUtf8(heloName_))
        for (char& c : heloName_)
            if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    if (ports_.milter && !milterSessionRefusal_)
        milterSessionRefusal_ = milterReply(ports_.milter->helo(milterFacts()), "helo");
    if (!extended) return reply(replies::helo(settings_.hostname));
    return reply(replies::ehlo(settings_.hostname, ehloKeywords()));
}

std::vector<std::string> SmtpSession::ehloKeywords() const {
    std::vector<std::string> keywords = {"PIPELINING", "SIZE " + std::to_string(settings_.maxMessageSize),
                                         "8BITMIME", "ENHANCEDSTATUSCODES", "DSN"};
    // RFC 3030: BDAT, and BODY=BINARYMIME with it.
    keywords.emplace_back("CHUNKING");
    keywords.emplace_back("BINARYMIME");
    // RFC 9422: the limits this session enforces (RCPTMAX: 452 4.5.3 beyond; MAILMAX:
    // 421 4.7.0 beyond).
    std::string limits = "LIMITS RCPTMAX=" + std::to_string(settings_.maxRecipients);
    if (settings_.maxTransactions > 0) limits += " MAILMAX=" + std::to_string(settings_.maxTransactions);
    keywords.push_back(limits);
    if (settings_.tlsAvailable && !tls_) keywords.emplace_back("STARTTLS");
    // RFC 4954 4 / RFC 3207 6: AUTH is offered only where credentials cannot be sniffed,
    // unless the operator allowed plaintext AUTH.
    if (authAllowed()) keywords.emplace_back("AUTH PLAIN LOGIN");
    keywords.emplace_back("SMTPUTF8");  // RFC 6531
    // RFC 8689 4: REQUIRETLS is offered only on a TLS session.
    if (tls_) keywords.emplace_back("REQUIRETLS");
    keywords.emplace_back("HELP");
    return keywords;
}

SmtpOutput SmtpSession::handleStartTls(const Command&) {
    if (tls_) return error(replies::badSequence("TLS already active"));
    if (!settings_.tlsAvailable) return error(replies::commandNotImplemented());
    return reply(replies::readyToStartTls(), SmtpOutput::Action::StartTls);
}

void SmtpSession::onTlsStarted() {
    // RFC 3207 4.2: the server MUST discard any knowledge obtained from the client (the
    // HELO name, an AUTH, an open transaction) and the client must send EHLO again.
    tls_ = true;
    state_ = SmtpState::Connected;
    extended_ = false;
    enhancedCodes_ = false;
    heloName_.clear();
    identity_.reset();
    saslMethod_.clear();
    sasl_.reset();
    txn_.reset();
    data_.reset();
    chunk_.reset();
}

// AUTH refused before any password was checked (those are auth.ok / auth.fail lines).
SmtpOutput SmtpSession::authRefused(std::string_view reason, const Reply& r) {
    logger().notice(clientLine(sessionId_, "auth.reject", client_).add("reason", reason).text("reply", replyText(r)).str());
    count("smtp_reject", "auth_" + std::string(reason));
    return error(r);
}

SmtpOutput SmtpSession::handleAuth(const Command& cmd) {
    // AUTH is an ESMTP extension (RFC 4954 3): after HELO it was never offered.
    if (!extended_) return authRefused("no_ehlo", replies::badSequence("send EHLO first"));
    if (!authAllowed()) {
        // RFC 3207 / RFC 5248: 538 5.7.11 Encryption required for requested authentication mechanism.
        return authRefused("encryption_required", Reply(538, Enhanced::EncryptionRequired,
                                                        "Encryption required for requested authentication mechanism"));
    }
    if (identity_) return error(replies::authAlreadyDone());
    auto mech = sasl::parseMechanism(cmd.authMechanism);
    if (!mech) return authRefused("unknown_mechanism", replies::authMechanismUnknown());
    sasl_ = std::make_unique<sasl::SaslExchange>(*mech);
    saslMethod_ = cmd.authMechanism;
    for (char& c : saslMethod_) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::optional<std::string_view> ir;
    if (cmd.authInitialResponse) ir = *cmd.authInitialResponse;
    return finishAuth(sasl_->start(ir));
}

SmtpOutput SmtpSession::continueAuth(std::string_view line) { return finishAuth(sasl_->respond(line)); }

SmtpOutput SmtpSession::finishAuth(const sasl::Step& step) {
    using sasl::StepKind;
    switch (step.kind) {
    case StepKind::Challenge:
        // RFC 4954 4: continue-req = "334" SP [base64] CRLF; the space stays even when
        // the challenge is empty (PLAIN without an initial response).
        if (step.challenge.empty()) return SmtpOutput{"334 \r\n", SmtpOutput::Action::None};
        return reply(replies::authChallenge(step.challenge));
    case StepKind::Cancelled: sasl_.reset(); return authRefused("cancelled", replies::authCancelled());
    case StepKind::BadBase64:
    case StepKind::Malformed:
        sasl_.reset();
        return authRefused("malformed", Reply(501, Enhanced::SyntaxError, "Cannot decode AUTH response"));
    case StepKind::BadAuthzid:
        logger().notice(core::EventLine::inSession(sessionId_, "auth.fail")
                            .add("svc", "smtp")
                            .add("ip", client_.host())
                            .add("user", sasl_->credentials().user)
                            .add("result", "authzid_mismatch")
                            .str());
        sasl_.reset();
        return error(replies::authInvalid());
    case StepKind::Done: break;
    }
    core::AuthRequest req{sasl_->credentials().user, sasl_->credentials().password, "smtp", client_, sessionId_,
                          saslMethod_, tls_ ? tlsVersion_ : ""};
    sasl_.reset();
    core::AuthResult result = ports_.auth.authenticate(req);
    switch (result.status) {
    case core::AuthStatus::Ok:
        identity_ = std::move(result.identity);
        return reply(replies::authSucceeded());
    case core::AuthStatus::TempFail:
        // RFC 4954 6: a backend failure is 454 4.7.0, never 535.
        return reply(replies::authTempFailure());
    case core::AuthStatus::Blocked:
        // Too many failures from this address or for this account: a temporary refusal
        // whatever the password was (no oracle), then hang up.
        return reply(Reply(454, Enhanced::OtherSecurity, "Too many failed authentication attempts, try again later"),
                     SmtpOutput::Action::Close);
    case core::AuthStatus::BadCredentials: break;
    }
    return error(replies::authInvalid());
}

SmtpOutput SmtpSession::handleMail(const Command& cmd) {
    // RFC 9422 MAILMAX: the advertised number of transactions per session is enforced; the
    // client opens a new session for the rest.
    if (settings_.maxTransactions > 0 && mailCommands_ >= settings_.maxTransactions) {
        logger().notice(clientLine(sessionId_, "limit.hit", client_)
                            .add("limit", "max_transactions_per_session")
                            .add("stage", "mail")
                            .str());
        count("smtp_reject", "mailmax");
        return reply(Reply(421, Enhanced::OtherSecurity, "Too many transactions in this session, closing"),
                     SmtpOutput::Action::Close);
    }
    const core::AuthIdentity* who = identity_ ? &*identity_ : nullptr;
    // One mail.reject line per refused MAIL, with the reason (the operator's view).
    auto mailReject = [&](std::string_view reason, const Reply& r) {
        logger().notice(transactionLine(sessionId_, "mail.reject", client_, cmd.path.address(), who ? who->user : "")
                            .add("reason", reason)
                            .text("reply", replyText(r))
                            .str());
        count("smtp_reject", std::string(reason));
    };
    // RFC 1870 6: a declared size over the limit is refused before any data is sent.
    if (cmd.size && *cmd.size > settings_.maxMessageSize) {
        mailReject("size", replies::messageTooBig());
        return error(replies::messageTooBig());  // a 5xx: counts towards smtp.max_errors
    }

    // Sender rules and the outbound message limit (a stolen password must not turn into a
    // spam run), decided in one call.
    policy::SenderVerdict sv = policy::TransactionPolicy::decideSender(
        cmd.path, policy::SenderRequest{settings_.role == Role::Submission, who, client_, ports_.limiter, ports_.hold});
    if (!sv.accepted) {
        if (sv.reason == "account_held") {
            logger().warning(transactionLine(sessionId_, "mail.reject", client_, cmd.path.address(), who->user)
                                 .add("reason", "account_held")
                                 .text("reply", replyText(sv.reply))
                                 .str());
            count("smtp_reject", "account_held");
            return reply(sv.reply);
        }
        if (sv.reason == "sender") {
            mailReject("sender", sv.reply);
            return error(sv.reply);
        }
        logger().warning(clientLine(sessionId_, "limit.hit", client_)
                             .add("user", who ? who->user : "")
                             .add("limit", sv.limit)
                             .add("stage", "mail")
                             .str());
        count("smtp_reject", "rate_limit");
        return reply(sv.reply);
    }
    if (auto refusal = mailExtensionRefusal(cmd)) {
        mailReject("parameter", *refusal);
        return error(*refusal);
    }
    if (milterSessionRefusal_) {
        mailReject("milter", *milterSessionRefusal_);
        return reply(*milterSessionRefusal_);
    }
    txn_ = std::make_unique<Transaction>();
    txn_->sender = cmd.path;
    txn_->dsn = cmd.dsn;
    txn_->declaredSize = cmd.size ? *cmd.size : 0;
    txn_->instance = sessionId_ + "." + std::to_string(++mailCommands_);
    txn_->binaryMime = cmd.body == BodyType::BinaryMime;
    txn_->smtpUtf8 = cmd.smtpUtf8;
    txn_->requireTls = cmd.requireTls;
    if (ports_.milter) {
        core::MilterVerdict mv = ports_.milter->mail(milterFacts());
        if (auto r = milterReply(mv, "mail")) {
            txn_.reset();
            mailReject("milter", *r);
            return reply(*r);
        }
        if (mv.kind == core::MilterVerdict::Kind::Discard) txn_->discard = true, txn_->discardReason = "milter";
    }
    state_ = SmtpState::Mail;
    return reply(replies::senderOk());
}

SmtpOutput SmtpSession::handleRcpt(const Command& cmd) {
    // RFC 5321 4.5.3.1.8: 452 4.5.3 past the limit (the client sends the rest later).
    auto rcptReject = [&](std::string_view reason, const Reply& r) {
        // The field order of every rcpt.reject line: ip, from, to, user, reason, reply.
        logger().notice(clientLine(sessionId_, "rcpt.reject", client_)
                            .address("from", txn_->sender.address())
                            .address("to", cmd.path.address())
                            .add("user", identity_ ? identity_->user : "")
                            .add("reason", reason)
                            .text("reply", replyText(r))
                            .str());
        count("smtp_reject", std::string(reason));
    };
    if (txn_->accepted >= settings_.maxRecipients) {
        // Logged once per transaction; past smtp.max_recipient_overshoot more of them each
        // count as an error (Postfix's smtpd_recipient_overshoot_limit): a client that sends
        // its whole list and then DATA is normal, one that never stops is not.
        if (txn_->overshoot++ == 0) rcptReject("too_many_recipients", replies::tooManyRecipients());
        if (txn_->overshoot > settings_.maxRecipientOvershoot) return error(replies::tooManyRecipients());
        return reply(replies::tooManyRecipients());
    }
    if (auto refusal = rcptExtensionRefusal(cmd)) {
        rcptReject("parameter", *refusal);
        return error(*refusal);
    }

    // Relay rules, the grant's own-senders rule and the outbound recipient limit, in one call.
    const core::AuthIdentity* who = identity_ ? &*identity_ : nullptr;
    policy::RecipientRequest req{
        policy::RecipientContext{identity_.has_value(), client_, ports_.directory, ports_.grants, settings_.hostname},
        txn_->sender, settings_.grantOwnSendersOnly, who, ports_.limiter};
    req.hold = ports_.hold;
    core::PolicyFacts facts;
    if (ports_.delegate) {
        facts.sessionId = sessionId_;
        facts.submission = settings_.role == Role::Submission;
        facts.extended = extended_;
        facts.heloName = heloName_;
        facts.sender = txn_->sender.isNull ? std::string() : txn_->sender.address();
        facts.recipient = cmd.path.address();
        facts.instance = txn_->instance;
        facts.client = client_;
        facts.serverAddress = serverHost_;
        facts.serverPort = serverPort_;
        if (identity_) {
            facts.saslMethod = saslMethod_;
            facts.saslUsername = identity_->user;
        }
        facts.size = txn_->declaredSize;
        facts.tls = tls_;
        if (tls_) {
            // "TLS" when the session is in TLS but the details are unknown (a balancer's
            // TLS): never empty, which a policy would take for a session in clear text.
            facts.tlsProtocol = milterTlsVersion_.empty() ? "TLS" : milterTlsVersion_;
            facts.tlsCipher = milterCipher_;
            facts.tlsCipherBits = cipherBits_;
        }
        req.delegate = ports_.delegate;
        req.facts = &facts;
    }
    req.relay.roles = settings_.roles;
    req.messageCounted = txn_->grantMessageCounted;
    req.usage = ports_.usage;
    req.declaredSize = txn_->declaredSize;
    req.quotaFullTempFail = settings_.quotaFullTempFail;
    policy::RcptVerdict v = policy::TransactionPolicy::decideRecipient(cmd.path, req);
    if (v.countedMessage) txn_->grantMessageCounted = true;  // also when a later check refused it
    const std::string& to = cmd.path.address();
    if (v.kind != policy::RcptVerdict::Kind::Accept) {
        if (v.reason == "rate_limit" || v.reason == "rate_tempfail") {
            core::EventLine hit = clientLine(sessionId_, "limit.hit", client_);
            hit.add("user", who ? who->user : "");
            if (!who && !v.grantUser.empty()) hit.add("grant_user", v.grantUser);  // whose limit it was
            logger().warning(hit.address("to", to).add("limit", v.limit).add("stage", "rcpt").str());
            count("smtp_reject", "rate_limit");
            return reply(v.reply);
        }
        core::EventLine l = clientLine(sessionId_, "rcpt.reject", client_);
        l.address("from", txn_->sender.address())
            .address("to", to)
            .add("user", who ? who->user : "")
            .add("reason", v.reason);
        if (!who && !v.grantUser.empty()) l.add("grant_user", v.grantUser);  // a grant relay: whose
        if (!v.quotaMailbox.empty()) l.add("mailbox", v.quotaMailbox);
        if (v.reason == "policy" || v.reason == "policy_default") l.add("policy_action", v.delegated.action);
        logger().notice(l.text("reply", replyText(v.reply)).str());
        count("smtp_reject", v.reason.empty() ? "recipient" : v.reason);
        if (v.kind == policy::RcptVerdict::Kind::TempFail) return reply(v.reply);
        return error(v.reply);
    }
    // After a milter's DISCARD the message gets no more milter events (as Postfix): a
    // libmilter milter no longer expects RCPT for it and would never answer.
    if (ports_.milter && !txn_->discard) {
        core::MilterFacts mf = milterFacts();
        mf.recipient = to;
        core::MilterVerdict mv = ports_.milter->rcpt(mf);
        if (auto r = milterReply(mv, "rcpt")) {
            logger().notice(clientLine(sessionId_, "rcpt.reject", client_)
                                .address("from", txn_->sender.address())
                                .address("to", to)
                                .add("user", who ? who->user : "")
                                .add("reason", "milter")
                                .text("reply", replyText(*r))
                                .str());
            count("smtp_reject", "milter");
            return reply(*r);
        }
        if (mv.kind == core::MilterVerdict::Kind::Discard) txn_->discard = true, txn_->discardReason = "milter";
    }
    if (ports_.milter) txn_->rcptTargets.push_back({to, {v.mailboxes, v.forwards}});
    for (auto& m : v.mailboxes)
        if (txn_->seenMailboxes.insert(m).second) txn_->localMailboxes.push_back(m);
    for (auto& f : v.forwards)
        if (txn_->seenRemote.insert(f).second) txn_->remoteRecipients.push_back(f);
    if (v.viaGrant && !txn_->relayedByGrant) {
        txn_->relayedByGrant = true;
        txn_->grantOwns = v.grantSenders;
        txn_->grantOwns.push_back(v.grantUser);
        txn_->grantUser = core::asciiLower(v.grantUser);
        for (auto& a : txn_->grantOwns) a = core::asciiLower(a);
    }
    noteRecipientDsn(cmd, v.mailboxes.empty() ? 0 : 1, v.forwards);
    switch (v.delegated.kind) {
    case core::PolicyDecision::Kind::Prepend:
        if (std::find(txn_->prepend.begin(), txn_->prepend.end(), v.delegated.header) == txn_->prepend.end())
            txn_->prepend.push_back(v.delegated.header);
        break;
    case core::PolicyDecision::Kind::Hold:
        if (!txn_->hold) txn_->holdReason = v.delegated.text;
        txn_->hold = true;
        break;
    case core::PolicyDecision::Kind::Discard:
        if (!txn_->discard) txn_->discardReason = v.delegated.text;
        txn_->discard = true;
        break;
    case core::PolicyDecision::Kind::Continue:
    case core::PolicyDecision::Kind::Refuse: break;
    }
    if (v.delegated.kind != core::PolicyDecision::Kind::Continue)
        logger().information(core::EventLine::inSession(sessionId_, "policy.action")
                                 .address("to", to)
                                 .add("action", v.delegated.action)
                                 .str());
    ++txn_->accepted;
    const std::string rcptText = sanitize(cmd.path.address());  // for the Received header
    if (std::find(txn_->recipients.begin(), txn_->recipients.end(), rcptText) == txn_->recipients.end())
        txn_->recipients.push_back(rcptText);
    state_ = SmtpState::Rcpt;
    return reply(replies::recipientOk());
}

SmtpOutput SmtpSession::handleData(const Command&) {
    // RFC 3030 3: a BINARYMIME message can only be sent with BDAT.
    if (txn_->binaryMime) return error(replies::badSequence("BODY=BINARYMIME requires BDAT"));
    if (auto refusal = openMessage()) return reply(*refusal);
    state_ = SmtpState::Data;
    return reply(replies::startMailInput());
}

std::optional<Reply> SmtpSession::openMessage() {
    core::Envelope env;
    env.sessionId = sessionId_;
    env.sender = txn_->sender.isNull ? "" : txn_->sender.address();
    env.localMailboxes = txn_->localMailboxes;
    env.remoteRecipients = txn_->remoteRecipients;
    env.client = client_;
    env.heloName = heloName_;
    env.authUser = identity_ ? identity_->user : "";
    env.viaGrant = txn_->relayedByGrant;
    env.grantUser = identity_ ? "" : txn_->grantUser;
    if (identity_) {
        env.senderOwns = identity_->senderAddresses;
        env.senderOwns.push_back(core::asciiLower(identity_->user));
    } else if (txn_->relayedByGrant) {
        env.senderOwns = txn_->grantOwns;
    }
    env.dsn = txn_->dsn;
    env.remoteDsn = txn_->remoteDsn;
    env.localSuccessDsn = txn_->localSuccessDsn;
    env.hold = txn_->hold;
    env.smtpUtf8 = txn_->smtpUtf8;
    env.requireTls = txn_->requireTls;
    core::SinkStatus status = core::SinkStatus::TempFail;
    if (ports_.milter && !txn_->discard) {
        core::MilterVerdict mv = ports_.milter->data(milterFacts());
        if (auto r = milterReply(mv, "data")) {
            count("smtp_reject", "milter");
            logger().notice(transactionLine(sessionId_, "message.reject", client_, txn_->sender.address(),
                                            identity_ ? identity_->user : "")
                                .add("reason", "milter")
                                .add("stage", "data")
                                .text("reply", replyText(*r))
                                .str());
            resetTransaction();
            return r;
        }
        if (mv.kind == core::MilterVerdict::Kind::Discard) txn_->discard = true, txn_->discardReason = "milter";
    }
    // DISCARD: nothing is opened in the store or the queue; the data is still read and checked.
    core::MessageWriterPtr writer;
    std::string* buffer = nullptr;
    if (txn_->discard) writer = std::make_unique<DiscardWriter>();
    else if (ports_.milter) {
        auto b = std::make_unique<BufferWriter>();
        buffer = &b->bytes;
        writer = std::move(b);
    } else writer = ports_.sink.open(env, status);
    if (!writer) {
        logger().warning(clientLine(sessionId_, "data.tempfail", client_)
                             .add("reason", status == core::SinkStatus::QueueFull ? "queue_full" : "sink_open_failed")
                             .str());
        resetTransaction();
        return status == core::SinkStatus::QueueFull ? replies::queueFull() : replies::tempFailure();
    }
    DataReaderLimits limits;
    limits.maxMessageSize = settings_.maxMessageSize;
    limits.maxLineLength = settings_.maxLineLength;
    limits.maxHeaderSize = settings_.maxHeaderSize;
    data_ = std::make_unique<DataState>(limits);
    data_->writer = std::move(writer);
    data_->buffer = buffer;
    if (buffer) data_->envelope = env;
    // PREPEND headers from the policy service go above our Received line (as Postfix's smtpd
    // writes them), each once.
    for (const auto& h : txn_->prepend) {
        std::string line = sanitize(h, 998) + "\r\n";
        writeData(*data_, line.data(), line.size());
    }
    std::string received = receivedHeader();
    writeData(*data_, received.data(), received.size());
    ++transactions_;
    return std::nullopt;
}

std::optional<Reply> SmtpSession::mailExtensionRefusal(const Command& cmd) const {
    // RFC 8689 4: REQUIRETLS only on a TLS session ("530 5.7.10 REQUIRETLS needed" is the
    // reply the RFC's registry text names for MAIL ... REQUIRETLS in clear).
    if (cmd.requireTls && !tls_) return Reply(530, Enhanced::EncryptionNeeded, "REQUIRETLS needs a TLS session");
    return std::nullopt;
}

std::optional<Reply> SmtpSession::rcptExtensionRefusal(const Command& cmd) const {
    // RFC 6531 3.5: a non-ASCII forward-path in a transaction without SMTPUTF8.
    if (cmd.path.hasUtf8 && !txn_->smtpUtf8)
        return Reply(553, Enhanced::NonAsciiAddress, "Non-ASCII address requires the SMTPUTF8 parameter");
    return std::nullopt;
}

std::string SmtpSession::protocolKeyword() const {
    // RFC 3848: ESMTP + S (TLS) + A (authenticated); RFC 6531 4.3: UTF8SMTP[S][A] for an
    // SMTPUTF8 transaction.
    std::string p = extended_ ? "ESMTP" : "SMTP";
    if (extended_ && txn_ && txn_->smtpUtf8) p = "UTF8SMTP";
    if (extended_) {
        if (tls_) p += "S";
        if (identity_) p += "A";
    }
    return p;
}

std::string SmtpSession::receivedHeader() const {
    // RFC 5321 4.4 time-stamp line: from <helo> ([ip]) by <host> with <protocol> id <id>
    // [for <rcpt>]; <date>. The client address is the session's ClientAddress.
    std::string ip = client_.host();
    std::string literal = ip.find(':') != std::string::npos ? "IPv6:" + ip : ip;
    std::string h = "Received: from " + (heloName_.empty() ? std::string("unknown") : heloName_) + " ([" + literal +
                    "])\r\n\tby " + settings_.hostname + " (Postern) with " + protocolKeyword() + " id " +
                    sessionId_ + "." + std::to_string(transactions_ + 1);
    if (txn_ && txn_->recipients.size() == 1) h += "\r\n\tfor <" + txn_->recipients.front() + ">";
    h += "; " + rfc5322Date(now_()) + "\r\n";
    return h;
}

void SmtpSession::writeData(DataState& ds, const char* p, std::size_t n) {
    if (ds.writeFailed) return;
    if (!ds.writer->write(p, n)) ds.writeFailed = true;
}

void SmtpSession::writeContent(const char* p, std::size_t n) {
    DataState& ds = *data_;
    if (!ds.inHeaders) {
        writeData(ds, p, n);
        return;
    }
    // Only the new octets (and the 3 before them) can complete the empty line: a client
    // that sends its header one octet per read or per BDAT chunk costs linear time.
    const std::size_t from = ds.headerBuf.size() >= 3 ? ds.headerBuf.size() - 3 : 0;
    ds.headerBuf.append(p, n);
    // The header section ends at the first empty line (RFC 5322 2.1).
    std::size_t end = std::string::npos;
    if (ds.headerBuf.rfind("\r\n", 0) == 0) end = 0;
    else if (auto pos = ds.headerBuf.find("\r\n\r\n", from); pos != std::string::npos) end = pos + 2;
    if (end == std::string::npos) {
        if (ds.headerBuf.size() > settings_.maxHeaderSize) {
            ds.headerTooBig = true;
            ds.inHeaders = false;
            writeData(ds, ds.headerBuf.data(), ds.headerBuf.size());
            ds.headerBuf.clear();
        }
        return;
    }
    finishHeaders(ds, end);
}

void SmtpSession::finishHeaders(DataState& ds, std::size_t end) {
    std::string headers = ds.headerBuf.substr(0, end);
    std::string rest = ds.headerBuf.substr(end);
    ds.headerBuf.clear();
    ds.inHeaders = false;
    const HeaderFacts facts = headerFacts(headers);
    ds.hops = facts.received;
    if (facts.returnPath) headers = withoutReturnPath(headers);
    writeData(ds, headers.data(), headers.size());
    std::string extra;
    if (settings_.role == Role::Submission && settings_.addMissingHeaders) {
        // RFC 6409 8.2 / 8.3: the MSA may add a missing Date and Message-ID.
        if (!facts.date) extra += "Date: " + rfc5322Date(now_()) + "\r\n";
        if (!facts.messageId) extra += "Message-ID: <" + randomHex(12) + "." + sessionId_ + "@" + settings_.hostname + ">\r\n";
        // A header-only BINARYMIME message may end without a line end: the added fields
        // must not join its last line.
        if (!extra.empty() && !headers.empty() && !headers.ends_with("\r\n")) extra.insert(0, "\r\n");
    }
    writeData(ds, extra.data(), extra.size());
    writeData(ds, rest.data(), rest.size());
}

std::size_t SmtpSession::onData(const char* bytes, std::size_t size, SmtpOutput& out) {
    if (state_ == SmtpState::Chunk) return onChunk(bytes, size, out);
    DataState& d = *data_;
    std::size_t used = d.reader.feed(bytes, size, [this](const char* p, std::size_t n) { writeContent(p, n); });
    if (d.reader.isDone()) out = finishData();
    return used;
}

SmtpOutput SmtpSession::finishData() {
    std::unique_ptr<DataState> d = std::move(data_);
    // RFC 5321 2.3.8 / CVE-2023-51764: a bare CR or LF is never a line end here, and a
    // message carrying one is refused whole, so a smuggled second message cannot exist.
    // Size, header and line limits are refused the same way, after the end of data.
    std::optional<Reply> refusal = d->reader.rejection();
    if (!refusal && d->headerTooBig) refusal = replies::messageTooBig();
    Reply r = refusal ? *refusal : Reply();
    std::string reason;
    if (refusal) {
        const auto& st = d->reader.status();
        reason = st.sawBareLineEnding ? "bare_line_ending"
                 : st.sizeExceeded    ? "size"
                 : st.headerTooLong   ? "header_size"  // the order of DataReader::rejection()
                 : st.lineTooLong     ? "line_length"
                                      : "header_size";
    }
    if (!reason.empty()) {
        count("smtp_reject", reason);
        logger().notice(transactionLine(sessionId_, "message.reject", client_, txn_->sender.address(),
                                        identity_ ? identity_->user : "")
                            .add("reason", reason)
                            .text("reply", std::to_string(r.code))
                            .str());
        d.reset();  // nothing was delivered: the writer removes its temp file
        resetTransaction();
        return error(r);
    }
    const std::uint64_t size = d->reader.status().bytes;
    return commitMessage(std::move(d), size);
}

SmtpOutput SmtpSession::commitMessage(std::unique_ptr<DataState> d, std::uint64_t size) {
    // A message that is all header (no empty line, RFC 5322 3.5: the body is optional) gets
    // the same header processing as any other (Return-Path dropped, Date / Message-ID added).
    if (d->inHeaders && !d->headerBuf.empty()) finishHeaders(*d, d->headerBuf.size());
    // Taken before the transaction is reset below.
    const std::string sender = txn_->sender.address(), user = identity_ ? identity_->user : "";
    auto line = [&](std::string_view event) { return transactionLine(sessionId_, event, client_, sender, user); };
    if (d->hops >= settings_.maxHops) {
        // A mail loop (two servers forwarding to each other, a transport back to this node):
        // refused before anything is stored, so no copy goes round once more.
        count("smtp_reject", "hops");
        const std::string hops = std::to_string(d->hops);
        logger().notice(line("message.reject").add("reason", "hops").add("hops", hops).text("reply", "554").str());
        d.reset();  // nothing was delivered: the writer removes its temp file
        resetTransaction();
        return error(Reply(554, Enhanced::RoutingLoop, "Too many hops (" + hops + " Received fields): mail loop?"));
    }
    core::SinkResult res;
    if (d->buffer && !d->writeFailed) {
        // Milters see the message before it is stored; a refusal is the answer to DATA.
        std::string content = std::move(*d->buffer);
        if (auto r = runMilters(*d, d->envelope, content)) {
            resetTransaction();
            return r->isPositive() ? reply(*r) : r->isTransient() ? reply(*r) : error(*r);
        }
        core::SinkStatus status = core::SinkStatus::TempFail;
        core::MessageWriterPtr w;
        if (txn_->discard) w = std::make_unique<DiscardWriter>();
        else w = ports_.sink.open(d->envelope, status);
        if (!w) {
            logger().warning(line("message.tempfail")
                                 .add("reason", status == core::SinkStatus::QueueFull ? "queue_full" : "sink_open_failed")
                                 .str());
            resetTransaction();
            return reply(status == core::SinkStatus::QueueFull ? replies::queueFull() : replies::tempFailure());
        }
        d->writer = std::move(w);
        d->buffer = nullptr;
        if (!d->writer->write(content.data(), content.size())) d->writeFailed = true;
    }
    if (d->writeFailed) res.status = core::SinkStatus::TempFail;
    else res = d->writer->commit();
    std::size_t nrcpt = txn_->recipients.size();
    bool grant = txn_->relayedByGrant;
    const std::string grantUser = txn_->grantUser;  // the transaction is reset before the log line
    const bool discard = txn_->discard, hold = txn_->hold;
    const std::string why = discard ? txn_->discardReason : txn_->holdReason;
    const std::size_t local = txn_->localMailboxes.size(), remote = txn_->remoteRecipients.size();
    resetTransaction();
    if (res.status == core::SinkStatus::Ok) {
        // A client that gets mail accepted is neither idle nor probing: earlier refusals are
        // forgiven (as Postfix's smtpd does after each message), so a list server with a stale
        // address in each of many messages is not cut off by smtp.max_errors.
        junkCommands_ = 0;
        errors_ = 0;
    }
    if (res.status == core::SinkStatus::Ok && discard) {
        logger().notice(line("message.discard")
                            .add("id", res.queueId)
                            .add("rcpts", nrcpt)
                            .add("size", size)  // DATA's or BDAT's octets (the reader never sees BDAT)
                            .add("reason", why)
                            .str());
        return reply(replies::queued(res.queueId));
    }
    if (res.status == core::SinkStatus::Ok && hold)
        // Only the queued copy (remote recipients) can wait on hold: local mailboxes have no
        // queue of their own and get their copy now.
        logger().notice(line("message.hold")
                            .add("id", res.queueId)
                            .add("held", remote)
                            .add("local_delivered", local)
                            .add("reason", why)
                            .str());
    switch (res.status) {
    case core::SinkStatus::Ok: {
        count("smtp_message", settings_.role == Role::Submission ? "submission" : "mx");
        core::EventLine l = line("message.accept");
        l.add("id", res.queueId).add("rcpts", nrcpt).add("local", local).add("remote", remote).add("size", size);
        if (grant) l.add("via", "pop_before_smtp").add("grant_user", grantUser);
        logger().information(l.str());
        return reply(replies::queued(res.queueId));
    }
    case core::SinkStatus::QueueFull:
        logger().warning(line("message.tempfail").add("reason", "queue_full").str());
        return reply(replies::queueFull());
    case core::SinkStatus::TempFail: break;
    }
    logger().warning(line("message.tempfail").add("reason", "write_failed").str());
    return reply(replies::tempFailure());
}

// RFC 3461: the recipient's NOTIFY/ORCPT go with every forward-path it expanded to (an
// alias also gets ORCPT = the address the client gave, 4.2); a local mailbox and NOTIFY
// with SUCCESS -> a "delivered" report once stored.
void SmtpSession::noteRecipientDsn(const Command& cmd, std::size_t localMailboxes,
                                   const std::vector<std::string>& forwards) {
    const std::string rcpt = cmd.path.address();
    for (const auto& f : forwards) {
        core::RecipientDsn d = cmd.rcptDsn;
        if (d.orcptType.empty() && f != rcpt) {
            d.orcptType = "rfc822";
            d.orcpt = rcpt;
        }
        if (!d.empty()) txn_->remoteDsn.try_emplace(f, std::move(d));
    }
    if (localMailboxes > 0 && cmd.rcptDsn.wantsSuccess())
        txn_->localSuccessDsn.emplace_back(rcpt, cmd.rcptDsn);
}

void SmtpSession::resetTransaction() {
    if (txn_ && ports_.milter) ports_.milter->abort();  // no-op after the end of message
    txn_.reset();
    data_.reset();
    if (state_ == SmtpState::Mail || state_ == SmtpState::Rcpt || state_ == SmtpState::Data ||
        state_ == SmtpState::Bdat || state_ == SmtpState::Chunk)
        state_ = SmtpState::Greeted;
}

// RFC 3030 2: BDAT <chunk-size> [LAST]. The chunk's octets follow the command line and are
// read in every case (also when the command is refused), so the session stays in step
// with a client that pipelined them. The content is stored exactly as sent: no
// dot-unstuffing, only the Received header in front. Unless the message is BODY=BINARYMIME
// its lines must end in CRLF and fit smtp.max_line_length, as with DATA (RFC 3030 3): the
// chunk that breaks the rule gets DataReader's 554 5.6.0 and the transaction ends.
SmtpOutput SmtpSession::handleBdat(const Command& cmd) {
    auto chunk = std::make_unique<ChunkState>();
    chunk->size = chunk->left = cmd.chunkSize;
    chunk->last = cmd.lastChunk;
    chunk->returnTo = state_;
    if (state_ == SmtpState::Rcpt) {
        // The first chunk of the message opens it, as DATA does.
        if (auto refusal = openMessage()) {
            chunk->refusal = *refusal;
            chunk->returnTo = state_;  // openMessage reset the transaction
        } else if (!txn_->binaryMime) {
            data_->lines.emplace(settings_.maxLineLength);
        }
    } else if (state_ != SmtpState::Bdat) {
        chunk->refusal = state_ == SmtpState::Connected ? replies::needHelo() : dataSequence(state_);
    }
    chunk_ = std::move(chunk);
    state_ = SmtpState::Chunk;
    if (chunk_->left == 0) return finishChunk();  // "BDAT 0 LAST" ends a message
    return {};
}

std::size_t SmtpSession::onChunk(const char* bytes, std::size_t size, SmtpOutput& out) {
    ChunkState& c = *chunk_;
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(c.left, size));
    if (!c.refusal && data_ && !data_->chunkTooBig) {
        data_->chunkBytes += take;
        if (data_->lines) data_->lines->feed({bytes, take});
        // The size limit applies while the chunks arrive: nothing past it is written.
        if (data_->chunkBytes > settings_.maxMessageSize) data_->chunkTooBig = true;
        else writeContent(bytes, take);
        if (take >= 2) {
            data_->lastTwo[0] = bytes[take - 2];
            data_->lastTwo[1] = bytes[take - 1];
        } else if (take == 1) {
            data_->lastTwo[0] = data_->lastTwo[1];
            data_->lastTwo[1] = bytes[0];
        }
    }
    c.left -= take;
    if (c.left == 0) out = finishChunk();
    return take;
}

SmtpOutput SmtpSession::finishChunk() {
    std::unique_ptr<ChunkState> c = std::move(chunk_);
    if (c->refusal) {
        state_ = c->returnTo;
        // A temporary failure of the sink (451/452) is no client error.
        return c->refusal->isTransient() ? reply(*c->refusal) : error(*c->refusal);
    }
    if (c->last && data_->lines) data_->lines->finish();
    std::optional<Reply> refusal;
    std::string reason;
    // The order of DataReader::rejection().
    if (data_->lines && data_->lines->sawBareLineEnding()) {
        refusal = replies::bareLineEnding(), reason = "bare_line_ending";
    } else if (data_->chunkTooBig) {
        refusal = replies::messageTooBig(), reason = "size";
    } else if (c->last && data_->headerTooBig) {
        refusal = Reply(552, Enhanced::MessageTooBig, "Message header section too large"), reason = "header_size";
    } else if (data_->lines && data_->lines->lineTooLong()) {
        refusal = replies::lineTooLong(), reason = "line_length";
    }
    if (refusal) {
        // The transaction is over: chunks that follow get 503.
        count("smtp_reject", reason);
        logger().notice(transactionLine(sessionId_, "message.reject", client_, txn_->sender.address(),
                                        identity_ ? identity_->user : "")
                            .add("reason", reason)
                            .text("reply", std::to_string(refusal->code))
                            .add("proto", "bdat")
                            .str());
        resetTransaction();  // drops data_: its writer removes the temp file, nothing is delivered
        return error(*refusal);
    }
    if (!c->last) {
        state_ = SmtpState::Bdat;
        return reply(Reply(250, Enhanced::Other, std::to_string(c->size) + " octets received"));
    }
    std::uint64_t size = data_->chunkBytes;
    if (data_->lines && size > 0 && !(data_->lastTwo[0] == '\r' && data_->lastTwo[1] == '\n')) {
        // Text content (not BINARYMIME, whose octets are kept exactly) that ends inside a line
        // is stored with a final CRLF, as DATA's always is (and as Postfix stores it):
        // otherwise a POP3 client is told N octets and sent N + 2 (RFC 1939 11).
        writeContent("\r\n", 2);
        size += 2;
    }
    return commitMessage(std::move(data_), size);
}

// --- milters (Sendmail milter protocol through core::MilterSession) ------------------

core::MilterFacts SmtpSession::milterFacts() const {
    core::MilterFacts f;
    f.sessionId = sessionId_;
    f.hostname = settings_.hostname;
    f.daemonName = milterListener_;
    f.client = client_;
    f.clientName = "[" + client_.host() + "]";  // no reverse lookups: the address literal
    f.serverAddr = serverHost_;
    f.serverPort = serverPort_;
    f.heloName = heloName_;
    if (identity_) {
        f.authUser = identity_->user;
        f.authType = saslMethod_;
    }
    if (tls_) {
        f.tlsVersion = milterTlsVersion_;
        f.cipher = milterCipher_;
    }
    if (txn_) {
        f.sender = txn_->sender.isNull ? std::string() : txn_->sender.address();
        f.queueId = txn_->instance;
    }
    return f;
}

std::optional<Reply> SmtpSession::milterReply(const core::MilterVerdict& v, std::string_view stage) const {
    using K = core::MilterVerdict::Kind;
    if (v.kind != K::Reject && v.kind != K::TempFail) return std::nullopt;
    if (!v.reply.empty()) {
        // SMFIR_REPLYCODE, checked by the parser: "xyz[ x.y.z] text", lines joined by CRLF.
        Reply r;
        r.code = std::stoi(v.reply.substr(0, 3));
        r.enh = Enhanced::None;
        r.lines.clear();
        std::size_t pos = 0;
        bool first = true;
        while (pos <= v.reply.size()) {
            auto end = v.reply.find("\r\n", pos);
            std::string l = v.reply.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
            l = l.size() > 4 ? l.substr(4) : std::string();
            // "5.7.1 text": the enhanced code is kept in the reply's own field.
            unsigned a = 0, b = 0, c = 0;
            int used = 0;
            if (std::sscanf(l.c_str(), "%1u.%3u.%3u%n", &a, &b, &c, &used) == 3 && (used == (int)l.size() || l[used] == ' ') &&
                a == static_cast<unsigned>(r.code / 100) && c < 100) {
                if (first) r.enh = static_cast<Enhanced>(b * 100 + c);
                l = used < (int)l.size() ? l.substr(used + 1) : std::string();
            }
            // libmilter milters double every '%' (Sendmail uses the text as a format
            // string): "%%" is one '%', a lone '%' is dropped, as Postfix does.
            std::string text;
            for (std::size_t i = 0; i < l.size(); ++i) {
                if (l[i] != '%') text += l[i];
                else if (i + 1 < l.size() && l[i + 1] == '%') text += l[i++];
            }
            r.lines.push_back(std::move(text));
            first = false;
            if (end == std::string::npos) break;
            pos = end + 2;
        }
        return r;
    }
    const bool content = stage == "data" || stage == "eom";
    if (v.kind == K::TempFail) return Reply(451, Enhanced::DeliveryNotAuthorized, "Service unavailable - try again later");
    return Reply(550, Enhanced::DeliveryNotAuthorized, content ? "Message content rejected" : "Command rejected");
}

std::optional<Reply> SmtpSession::runMilters(DataState&, core::Envelope& env, std::string& content) {
    core::MilterMessage m;
    m.sender = env.sender;
    for (const auto& [rcpt, targets] : txn_->rcptTargets) m.recipients.push_back(rcpt);
    m.content = std::move(content);
    core::MilterVerdict v = ports_.milter->message(milterFacts(), m);
    content = std::move(m.content);
    const std::string sender = txn_->sender.address(), user = identity_ ? identity_->user : "";
    if (auto r = milterReply(v, "eom")) {
        count("smtp_reject", "milter");
        logger().notice(transactionLine(sessionId_, "message.reject", client_, sender, user)
                            .add("reason", "milter")
                            .add("milter", v.milter)
                            .text("reply", replyText(*r))
                            .str());
        return r;
    }
    if (v.kind == core::MilterVerdict::Kind::Discard && !txn_->discard) {
        txn_->discard = true;
        txn_->discardReason = "milter";
    }
    if (m.quarantine) {
        // Held in the queue (posternctl queue release); see README "filters" for local recipients.
        txn_->hold = true;
        txn_->holdReason = "milter quarantine: " + m.quarantineReason;
        env.hold = true;
    }
    if (m.senderChanged) env.sender = m.sender;
    if (!m.deletedRecipients.empty() || !m.addedRecipients.empty()) {
        auto& targets = txn_->rcptTargets;
        for (const auto& gone : m.deletedRecipients)
            targets.erase(std::remove_if(targets.begin(), targets.end(),
                                         [&](const auto& t) {
                                             return t.first.size() == gone.size() &&
                                                    std::equal(t.first.begin(), t.first.end(), gone.begin(),
                                                               [](char a, char b) {
                                                                   return std::tolower(static_cast<unsigned char>(a)) ==
                                                                          std::tolower(static_cast<unsigned char>(b));
                                                               });
                                         }),
                          targets.end());
        for (const auto& added : m.addedRecipients) {
            // A milter's recipient is trusted like an authenticated client's (it may relay),
            // but local addresses are still looked up (aliases, unknown users).
            ParsedPath path = parseMailbox(added);
            policy::RecipientContext ctx{true, client_, ports_.directory, nullptr, settings_.hostname};
            ctx.roles = settings_.roles;
            policy::RcptVerdict rv = path.ok ? policy::RelayPolicy::decide(path, ctx) : policy::RcptVerdict{};
            if (rv.kind != policy::RcptVerdict::Kind::Accept) {
                logger().warning(core::EventLine::inSession(sessionId_, "milter.add_rcpt_refused")
                                     .address("to", added)
                                     .add("reason", path.ok ? rv.reason : "syntax")
                                     .str());
                continue;
            }
            targets.push_back({added, {rv.mailboxes, rv.forwards}});
        }
        std::set<std::string> seenM, seenR;
        env.localMailboxes.clear();
        env.remoteRecipients.clear();
        for (const auto& [rcpt, t] : targets) {
            for (const auto& mb : t.first)
                if (seenM.insert(mb).second) env.localMailboxes.push_back(mb);
            for (const auto& f : t.second)
                if (seenR.insert(f).second) env.remoteRecipients.push_back(f);
        }
        if (env.localMailboxes.empty() && env.remoteRecipients.empty()) {
            // Every recipient deleted: nothing to deliver (as a discard).
            txn_->discard = true;
            txn_->discardReason = "milter: no recipients left";
        }
    }
    return std::nullopt;
}

}  // namespace postern::smtp
