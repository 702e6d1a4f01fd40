#include "smtp/SmtpSession.h"

#include "core/EventLine.h"
#include "core/MailDate.h"

#include "policy/TransactionPolicy.h"
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

// Strips CR/LF/control characters from client-supplied text before it goes into a
// header or a log line (a HELO name must not be able to add header lines).
std::string sanitize(std::string_view s, std::size_t max = 255) {
    std::string out;
    for (char c : s.substr(0, max)) {
        unsigned char u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? '?' : c;
    }
    return out;
}

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

    explicit DataState(const DataReaderLimits& limits) : reader(limits) {}
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
    out.action = action;
    if (action == SmtpOutput::Action::Close) state_ = SmtpState::Closed;
    return out;
}

SmtpOutput SmtpSession::error(const Reply& r) {
    // A client that keeps sending bad commands is either broken or probing: cut it off
    // (as Postfix's smtpd_hard_error_limit does).
    if (++errors_ >= settings_.maxErrors) {
        logger().notice(core::EventLine::inSession(sessionId_, "smtp.too_many_errors").add("ip", client_.host()).str());
        SmtpOutput out = reply(r);
        out.bytes += replies::tooManyErrors().format(enhancedCodes_);
        out.action = SmtpOutput::Action::Close;
        state_ = SmtpState::Closed;
        return out;
    }
    return reply(r);
}

SmtpOutput SmtpSession::greeting() { return reply(replies::greeting(settings_.hostname)); }

SmtpOutput SmtpSession::onTimeout() {
    logger().information(core::EventLine::inSession(sessionId_, "smtp.timeout")
                             .add("ip", client_.host())
                             .add("phase", data_ ? "data" : "command")
                             .str());
    data_.reset();  // an unfinished message is discarded, never delivered
    return reply(replies::timeout(), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::onShutdown() {
    data_.reset();
    return reply(replies::serviceUnavailable(settings_.hostname), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::onLineTooLong() {
    // A line past the limit (a flood, or a client that never sends CRLF) ends the session:
    // the rest of it is never read, so nothing after it can be trusted to be a command.
    sasl_.reset();
    data_.reset();
    logger().notice(core::EventLine::inSession(sessionId_, "smtp.line_too_long").add("ip", client_.host()).str());
    return reply(Reply(500, Enhanced::LineTooLong, "Line too long"), SmtpOutput::Action::Close);
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
};

namespace {

constexpr unsigned bit(SmtpState s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned AnyState = bit(SmtpState::Connected) | bit(SmtpState::Greeted) | bit(SmtpState::Mail) |
                              bit(SmtpState::Rcpt);
constexpr unsigned AfterHelo = bit(SmtpState::Greeted) | bit(SmtpState::Mail) | bit(SmtpState::Rcpt);

Reply noSequenceError(SmtpState) { return replies::badSequence("Bad sequence of commands"); }
Reply mailSequence(SmtpState s) { return s == SmtpState::Connected ? replies::needHelo() : replies::nestedMail(); }
Reply rcptSequence(SmtpState) { return replies::needMailFirst(); }
Reply dataSequence(SmtpState s) { return s == SmtpState::Mail ? replies::needRcptFirst() : replies::needMailFirst(); }
Reply needHelo(SmtpState) { return replies::needHelo(); }
Reply authSequence(SmtpState s) {
    // RFC 4954 4: AUTH is not permitted during a mail transaction.
    return s == SmtpState::Connected ? replies::needHelo() : replies::badSequence("MAIL transaction in progress");
}

}  // namespace

const SmtpSession::CommandRule* SmtpSession::ruleFor(Verb verb) {
    static const CommandRule Commands[] = {
        {Verb::Ehlo, &SmtpSession::handleEhlo, AnyState, noSequenceError, false},
        {Verb::Helo, &SmtpSession::handleHelo, AnyState, noSequenceError, false},
        {Verb::Mail, &SmtpSession::handleMail, bit(SmtpState::Greeted), mailSequence, true},
        {Verb::Rcpt, &SmtpSession::handleRcpt, bit(SmtpState::Mail) | bit(SmtpState::Rcpt), rcptSequence, true},
        {Verb::Data, &SmtpSession::handleData, bit(SmtpState::Rcpt), dataSequence, false},
        {Verb::Rset, &SmtpSession::handleRset, AnyState, noSequenceError, false},
        {Verb::Noop, &SmtpSession::handleNoop, AnyState, noSequenceError, false},
        {Verb::Vrfy, &SmtpSession::handleVrfy, AnyState, noSequenceError, false},
        {Verb::Help, &SmtpSession::handleHelp, AnyState, noSequenceError, false},
        {Verb::Quit, &SmtpSession::handleQuit, AnyState, noSequenceError, false},
        {Verb::StartTls, &SmtpSession::handleStartTls, AfterHelo, needHelo, false},
        {Verb::Auth, &SmtpSession::handleAuth, bit(SmtpState::Greeted), authSequence, false},
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
    case SmtpState::Closed: return "closed";
    }
    return "?";
}

SmtpOutput SmtpSession::onLine(std::string_view line) {
    if (state_ == SmtpState::Closed) return {};
    if (sasl_) return continueAuth(line);

    CommandOptions opts;
    opts.maxLineLength = settings_.maxCommandLength;
    const Command cmd = parseCommand(line, opts);  // the only parse of this line
    const CommandRule* rule = ruleFor(cmd.verb);
    const bool inSequence = rule && (rule->allowed & bit(state_)) != 0;
    if (!cmd.ok()) {
        if (rule && rule->sequenceFirst && !inSequence) return error(rule->outOfSequence(state_));
        return error(cmd.errorReply());
    }
    if (!rule) return error(replies::commandNotImplemented());
    if (!inSequence) return error(rule->outOfSequence(state_));
    return (this->*rule->handler)(cmd);
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
    return reply(replies::closing(settings_.hostname), SmtpOutput::Action::Close);
}

SmtpOutput SmtpSession::greet(std::string_view arg, bool extended) {
    // RFC 5321 4.1.4: EHLO/HELO in the middle of a session resets it like RSET.
    resetTransaction();
    state_ = SmtpState::Greeted;
    extended_ = extended;
    if (extended) enhancedCodes_ = true;
    heloName_ = sanitize(arg);
    if (!extended) return reply(replies::helo(settings_.hostname));
    std::vector<std::string> keywords = {"PIPELINING", "SIZE " + std::to_string(settings_.maxMessageSize),
                                         "8BITMIME", "ENHANCEDSTATUSCODES"};
    if (settings_.tlsAvailable && !tls_) keywords.emplace_back("STARTTLS");
    // RFC 4954 4 / RFC 3207 6: AUTH is offered only where credentials cannot be sniffed,
    // unless the operator allowed plaintext AUTH.
    if (authAllowed()) keywords.emplace_back("AUTH PLAIN LOGIN");
    keywords.emplace_back("HELP");
    return reply(replies::ehlo(settings_.hostname, keywords));
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
    heloName_.clear();
    identity_.reset();
    sasl_.reset();
    txn_.reset();
    data_.reset();
}

SmtpOutput SmtpSession::handleAuth(const Command& cmd) {
    if (!extended_) return error(replies::needHelo());
    if (!authAllowed()) {
        // RFC 3207 / RFC 5248: 538 5.7.11 Encryption required for requested authentication mechanism.
        return error(Reply(538, Enhanced::EncryptionRequired, "Encryption required for requested authentication mechanism"));
    }
    if (identity_) return error(replies::authAlreadyDone());
    auto mech = sasl::parseMechanism(cmd.authMechanism);
    if (!mech) return error(replies::authMechanismUnknown());
    sasl_ = std::make_unique<sasl::SaslExchange>(*mech);
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
    case StepKind::Cancelled: sasl_.reset(); return error(replies::authCancelled());
    case StepKind::BadBase64:
    case StepKind::Malformed:
        sasl_.reset();
        return error(Reply(501, Enhanced::SyntaxError, "Cannot decode AUTH response"));
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
    core::AuthRequest req{sasl_->credentials().user, sasl_->credentials().password, "smtp", client_, sessionId_};
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
    // RFC 1870 6: a declared size over the limit is refused before any data is sent.
    if (cmd.size && *cmd.size > settings_.maxMessageSize) return reply(replies::messageTooBig());

    // Sender rules and the outbound message limit (a stolen password must not turn into a
    // spam run), decided in one call.
    const core::AuthIdentity* who = identity_ ? &*identity_ : nullptr;
    policy::SenderVerdict sv = policy::TransactionPolicy::decideSender(
        cmd.path, policy::SenderRequest{settings_.role == Role::Submission, who, client_, ports_.limiter});
    if (!sv.accepted) {
        if (sv.reason == "sender") {
            logger().notice(core::EventLine::inSession(sessionId_, "mail.reject")
                                .add("ip", client_.host())
                                .address("from", cmd.path.address())
                                .add("user", who ? who->user : "")
                                .text("reply", std::to_string(sv.reply.code) + " " + sv.reply.text())
                                .str());
            return error(sv.reply);
        }
        logger().warning(core::EventLine::inSession(sessionId_, "limit.hit")
                             .add("ip", client_.host())
                             .add("user", who ? who->user : "")
                             .add("limit", sv.limit)
                             .add("stage", "mail")
                             .str());
        count("smtp_reject", "rate_limit");
        return reply(sv.reply);
    }
    txn_ = std::make_unique<Transaction>();
    txn_->sender = cmd.path;
    state_ = SmtpState::Mail;
    return reply(replies::senderOk());
}

SmtpOutput SmtpSession::handleRcpt(const Command& cmd) {
    // RFC 5321 4.5.3.1.8: 452 4.5.3 past the limit (the client sends the rest later).
    if (txn_->accepted >= settings_.maxRecipients) return reply(replies::tooManyRecipients());

    // Relay rules, the grant's own-senders rule and the outbound recipient limit, in one call.
    const core::AuthIdentity* who = identity_ ? &*identity_ : nullptr;
    policy::RecipientRequest req{
        policy::RecipientContext{identity_.has_value(), client_, ports_.directory, ports_.grants, settings_.hostname},
        txn_->sender, settings_.grantOwnSendersOnly, who, ports_.limiter};
    policy::RcptVerdict v = policy::TransactionPolicy::decideRecipient(cmd.path, req);
    const std::string to(cmd.path.address());
    if (v.kind != policy::RcptVerdict::Kind::Accept) {
        if (v.reason == "rate_limit" || v.reason == "rate_tempfail") {
            logger().warning(core::EventLine::inSession(sessionId_, "limit.hit")
                                 .add("ip", client_.host())
                                 .add("user", who ? who->user : "")
                                 .address("to", to)
                                 .add("limit", v.limit)
                                 .add("stage", "rcpt")
                                 .str());
            count("smtp_reject", "rate_limit");
            return reply(v.reply);
        }
        core::EventLine rejected = core::EventLine::inSession(sessionId_, "rcpt.reject");
        rejected.add("ip", client_.host())
            .address("from", txn_->sender.address())
            .address("to", to)
            .add("user", who ? who->user : "")
            .add("reason", v.reason);
        if (v.reason == "grant_sender_mismatch") rejected.add("grant_user", v.grantUser);
        logger().notice(rejected.text("reply", std::to_string(v.reply.code) + " " + v.reply.text()).str());
        count("smtp_reject", v.reason.empty() ? "recipient" : v.reason);
        if (v.kind == policy::RcptVerdict::Kind::TempFail) return reply(v.reply);
        return error(v.reply);
    }
    for (auto& m : v.mailboxes)
        if (txn_->seenMailboxes.insert(m).second) txn_->localMailboxes.push_back(m);
    for (auto& f : v.forwards)
        if (txn_->seenRemote.insert(f).second) txn_->remoteRecipients.push_back(f);
    if (v.viaGrant) txn_->relayedByGrant = true;
    ++txn_->accepted;
    const std::string rcptText = sanitize(cmd.path.address());  // for the Received header
    if (std::find(txn_->recipients.begin(), txn_->recipients.end(), rcptText) == txn_->recipients.end())
        txn_->recipients.push_back(rcptText);
    state_ = SmtpState::Rcpt;
    return reply(replies::recipientOk());
}

SmtpOutput SmtpSession::handleData(const Command&) {

    core::Envelope env;
    env.sessionId = sessionId_;
    env.sender = txn_->sender.isNull ? "" : txn_->sender.address();
    env.localMailboxes = txn_->localMailboxes;
    env.remoteRecipients = txn_->remoteRecipients;
    env.client = client_;
    env.heloName = heloName_;
    env.authUser = identity_ ? identity_->user : "";
    core::SinkStatus status = core::SinkStatus::TempFail;
    core::MessageWriterPtr writer = ports_.sink.open(env, status);
    if (!writer) {
        logger().warning(core::EventLine::inSession(sessionId_, "data.tempfail")
                             .add("ip", client_.host())
                             .add("reason", (status == core::SinkStatus::QueueFull ? "queue_full" : "sink_open_failed"))
                             .str());
        resetTransaction();
        return reply(status == core::SinkStatus::QueueFull ? replies::queueFull() : replies::tempFailure());
    }
    DataReaderLimits limits;
    limits.maxMessageSize = settings_.maxMessageSize;
    limits.maxLineLength = settings_.maxLineLength;
    limits.maxHeaderSize = settings_.maxHeaderSize;
    data_ = std::make_unique<DataState>(limits);
    state_ = SmtpState::Data;
    data_->writer = std::move(writer);
    std::string received = receivedHeader();
    writeData(received.data(), received.size());
    ++transactions_;
    return reply(replies::startMailInput());
}

std::string SmtpSession::protocolKeyword() const {
    // RFC 3848: ESMTP + S (TLS) + A (authenticated).
    std::string p = extended_ ? "ESMTP" : "SMTP";
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
    h += "; " + core::rfc5322Date(now_()) + "\r\n";
    return h;
}

void SmtpSession::writeData(const char* p, std::size_t n) {
    if (!data_ || data_->writeFailed) return;
    if (!data_->writer->write(p, n)) data_->writeFailed = true;
}

std::size_t SmtpSession::onData(const char* bytes, std::size_t size, SmtpOutput& out) {
    DataState& d = *data_;
    std::size_t used = d.reader.feed(bytes, size, [this](const char* p, std::size_t n) {
        DataState& ds = *data_;
        if (!ds.inHeaders) {
            writeData(p, n);
            return;
        }
        ds.headerBuf.append(p, n);
        // The header section ends at the first empty line (RFC 5322 2.1).
        std::size_t end = std::string::npos;
        if (ds.headerBuf.rfind("\r\n", 0) == 0) end = 0;
        else if (auto pos = ds.headerBuf.find("\r\n\r\n"); pos != std::string::npos) end = pos + 2;
        if (end == std::string::npos) {
            if (ds.headerBuf.size() > settings_.maxHeaderSize) {
                ds.headerTooBig = true;
                ds.inHeaders = false;
                writeData(ds.headerBuf.data(), ds.headerBuf.size());
                ds.headerBuf.clear();
            }
            return;
        }
        std::string headers = ds.headerBuf.substr(0, end);
        std::string rest = ds.headerBuf.substr(end);
        ds.headerBuf.clear();
        ds.inHeaders = false;
        writeData(headers.data(), headers.size());
        std::string extra;
        if (settings_.role == Role::Submission && settings_.addMissingHeaders) {
            bool hasDate = false, hasId = false;
            std::size_t pos = 0;
            while (pos < headers.size()) {
                std::string_view l(headers.data() + pos, headers.size() - pos);
                if (startsWithNoCase(l, "date:")) hasDate = true;
                if (startsWithNoCase(l, "message-id:")) hasId = true;
                auto nl = headers.find("\r\n", pos);
                if (nl == std::string::npos) break;
                pos = nl + 2;
            }
            // RFC 6409 8.2 / 8.3: the MSA may add a missing Date and Message-ID.
            if (!hasDate) extra += "Date: " + core::rfc5322Date(now_()) + "\r\n";
            if (!hasId) extra += "Message-ID: <" + randomHex(12) + "." + sessionId_ + "@" + settings_.hostname + ">\r\n";
        }
        writeData(extra.data(), extra.size());
        writeData(rest.data(), rest.size());
    });
    if (d.reader.isDone()) out = finishData();
    return used;
}

SmtpOutput SmtpSession::finishData() {
    std::unique_ptr<DataState> d = std::move(data_);
    if (d->inHeaders && !d->headerBuf.empty()) {
        // A message that is all header (no empty line): write what we held.
        writeData(d->headerBuf.data(), d->headerBuf.size());
    }
    // "s=<id> event=<name>" first, then the details (DESIGN: Logging); core::EventLine escapes
    // client-supplied values: one token each, nothing forged. Copied: the transaction ends first.
    const std::string from(txn_->sender.address());
    const std::string user = identity_ ? identity_->user : "";
    auto line = [&](std::string_view event) {
        core::EventLine l = core::EventLine::inSession(sessionId_, event);
        l.add("ip", client_.host()).address("from", from).add("user", user);
        return l;
    };
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
                 : st.lineTooLong     ? "line_length"
                                      : "header_size";
    }
    if (!reason.empty()) {
        count("smtp_reject", reason);
        logger().notice(line("message.reject").add("reason", reason).text("reply", std::to_string(r.code)).str());
        d.reset();  // nothing was delivered: the writer removes its temp file
        resetTransaction();
        return error(r);
    }
    core::SinkResult res;
    if (d->writeFailed) res.status = core::SinkStatus::TempFail;
    else res = d->writer->commit();
    std::size_t nrcpt = txn_->recipients.size();
    bool grant = txn_->relayedByGrant;
    resetTransaction();
    switch (res.status) {
    case core::SinkStatus::Ok: {
        count("smtp_message", settings_.role == Role::Submission ? "submission" : "mx");
        core::EventLine accepted = line("message.accept");
        accepted.add("id", res.queueId).add("rcpts", nrcpt).add("size", d->reader.status().bytes);
        if (grant) accepted.add("via", "pop_before_smtp");
        logger().information(accepted.str());
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

void SmtpSession::resetTransaction() {
    txn_.reset();
    data_.reset();
    if (state_ == SmtpState::Mail || state_ == SmtpState::Rcpt || state_ == SmtpState::Data)
        state_ = SmtpState::Greeted;
}

}  // namespace postern::smtp
