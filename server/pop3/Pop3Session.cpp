#include "pop3/Pop3Session.h"

#include "core/EventLine.h"
#include "core/OutboundLimiter.h"

#include <Poco/Logger.h>

#include <exception>
#include <utility>

namespace postern::pop3 {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.pop3"); }

std::string okLine(std::string_view text) { return text.empty() ? "+OK\r\n" : "+OK " + std::string(text) + "\r\n"; }
std::string errLine(std::string_view text) { return "-ERR " + std::string(text) + "\r\n"; }
Pop3Output reply(std::string bytes) { return {std::move(bytes), Pop3Output::Action::None, nullptr}; }

const char* stateNameOf(std::size_t index) {
    switch (index) {
    case 0: return "authorization";
    case 1: return "transaction";
    default: return "update";
    }
}

constexpr const char* PlaintextRefused =
    "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections";

}  // namespace

Pop3Session::Pop3Session(const Pop3Settings& settings, Pop3Ports ports, SessionContext context)
    : settings_(settings), ports_(ports), context_(std::move(context)), tls_(context_.tls), state_(Authorization{}) {}

std::string_view Pop3Session::stateName() const { return stateNameOf(state_.index()); }

void Pop3Session::transition(State next) {
    std::size_t from = state_.index();
    // Assigning destroys the old state: leaving Transaction releases the maildrop lock.
    state_ = std::move(next);
    if (logger().debug())
        logger().debug(core::EventLine::inSession(context_.sessionId, "pop3.state")
                           .add("from", stateNameOf(from))
                           .add("to", stateNameOf(state_.index()))
                           .str());
}

void Pop3Session::log(bool warning, const std::string& line) const {
    if (warning) logger().warning(line);
    else logger().information(line);
}

Pop3Output Pop3Session::greeting() {
    std::string host = settings_.greetingHost.empty() ? "" : settings_.greetingHost + " ";
    return reply(okLine(host + "Postern POP3 server ready"));
}

Pop3Output Pop3Session::close(std::string bytes) {
    closed_ = true;
    if (!std::holds_alternative<Update>(state_)) transition(Update{});
    return {std::move(bytes), Pop3Output::Action::Close, nullptr};
}

Pop3Output Pop3Session::bad(std::string bytes) {
    ++badCommands_;
    if (settings_.maxBadCommands != 0 && badCommands_ >= settings_.maxBadCommands) {
        log(true, core::EventLine::inSession(context_.sessionId, "pop3.too_many_errors")
                      .add("ip", context_.client.host())
                      .add("errors", badCommands_)
                      .str());
        // Not a QUIT: nothing is deleted, the maildrop lock is released.
        return close(errLine("too many errors"));
    }
    return reply(std::move(bytes));
}

Pop3Output Pop3Session::onLine(std::string_view line) {
    if (closed_ || awaitingTls_) {
        // After STLS nothing may be read until the handshake (the connection should not
        // call us); treat it as a broken connection rather than answer in plaintext.
        closed_ = true;
        return {"", Pop3Output::Action::Close, nullptr};
    }
    if (auto* a = std::get_if<Authorization>(&state_); a && a->sasl) return handleSaslLine(line);

    auto parsed = parsePop3Command(line);
    if (parsed.error != Pop3ParseError::None) return bad(errLine(describe(parsed.error)));
    return dispatch(parsed.command);
}

Pop3Output Pop3Session::dispatch(const Pop3Command& c) {
    // Valid in every state before UPDATE.
    if (c.verb == Pop3Verb::Capa) return handleCapa();
    if (c.verb == Pop3Verb::Quit) return handleQuit();

    if (std::holds_alternative<Authorization>(state_)) {
        switch (c.verb) {
        case Pop3Verb::Stls: return handleStls();
        case Pop3Verb::User: return handleUser(c);
        case Pop3Verb::Pass: return handlePass(c);
        case Pop3Verb::Auth: return handleAuth(c);
        default: return bad(errLine("Command not valid in this state"));
        }
    }
    return handleTransaction(std::get<Transaction>(state_), c);
}

Pop3Output Pop3Session::handleCapa() {
    // RFC 2449 5: capabilities; the login ones are only offered where they can be used.
    std::string out = okLine("Capability list follows");
    out += "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
    if (std::holds_alternative<Authorization>(state_)) {
        if (plaintextAllowed()) out += "USER\r\nSASL PLAIN LOGIN\r\n";
        if (settings_.tlsAvailable && !tls_) out += "STLS\r\n";
    }
    out += "IMPLEMENTATION Postern\r\n.\r\n";
    return reply(std::move(out));
}

Pop3Output Pop3Session::handleStls() {
    // RFC 2595 4: STLS only in AUTHORIZATION and only once.
    if (tls_) return bad(errLine("Command not permitted when TLS active"));
    if (!settings_.tlsAvailable) return bad(errLine("STLS not available"));
    awaitingTls_ = true;
    return {okLine("Begin TLS negotiation"), Pop3Output::Action::StartTls, nullptr};
}

void Pop3Session::onTlsStarted() {
    // RFC 2595 4: the server MUST discard any knowledge obtained from the client before
    // the TLS negotiation: a USER given in plaintext does not carry over.
    tls_ = true;
    awaitingTls_ = false;
    transition(Authorization{});
}

Pop3Output Pop3Session::handleUser(const Pop3Command& c) {
    if (!plaintextAllowed()) {
        std::string text = PlaintextRefused;
        if (settings_.tlsAvailable) text += "; use STLS";
        return bad(errLine(text));
    }
    std::get<Authorization>(state_).pendingUser = c.argument;
    // RFC 1939 7 allows -ERR for an unknown user; we never tell (no user enumeration).
    return reply(okLine("Send PASS"));
}

Pop3Output Pop3Session::handlePass(const Pop3Command& c) {
    auto& a = std::get<Authorization>(state_);
    if (!a.pendingUser) return bad(errLine("Send USER first"));
    std::string user = std::move(*a.pendingUser);
    a.pendingUser.reset();
    if (!plaintextAllowed()) return bad(errLine(PlaintextRefused));
    return login(user, c.argument, "USER");
}

Pop3Output Pop3Session::handleAuth(const Pop3Command& c) {
    // A bare AUTH: the mechanisms, one per line (the discovery older Outlook versions do
    // before RFC 5034's CAPA; Dovecot answers it the same way). Not an error.
    if (c.argument.empty()) return reply(okLine("") + (plaintextAllowed() ? "PLAIN\r\nLOGIN\r\n" : "") + ".\r\n");
    auto mech = sasl::parseMechanism(c.argument);
    if (!mech) return bad(errLine("Unsupported authentication mechanism"));
    // PLAIN and LOGIN send the password in the clear: same rule as USER/PASS.
    if (!plaintextAllowed()) {
        std::string text = PlaintextRefused;
        if (settings_.tlsAvailable) text += "; use STLS";
        return bad(errLine(text));
    }
    std::get<Authorization>(state_).pendingUser.reset();
    sasl::SaslExchange exchange(*mech);
    std::optional<std::string_view> initial;
    if (c.initialResponse) initial = *c.initialResponse;
    auto step = exchange.start(initial);
    return handleSaslStep(std::move(exchange), step);
}

Pop3Output Pop3Session::handleSaslLine(std::string_view line) {
    auto& a = std::get<Authorization>(state_);
    sasl::SaslExchange exchange = std::move(*a.sasl);
    a.sasl.reset();
    auto step = exchange.respond(line);
    return handleSaslStep(std::move(exchange), step);
}

// A SASL exchange that ended before any password was checked (SMTP logs the same line).
void Pop3Session::authRejected(std::string_view reason) const {
    log(true, core::EventLine::inSession(context_.sessionId, "auth.reject")
                  .add("svc", "pop3")
                  .add("ip", context_.client.host())
                  .add("reason", reason)
                  .str());
}

Pop3Output Pop3Session::handleSaslStep(sasl::SaslExchange exchange, const sasl::Step& step) {
    switch (step.kind) {
    case sasl::StepKind::Challenge:
        // RFC 5034 4: "+" SP base64 challenge; the next line is the client's response.
        std::get<Authorization>(state_).sasl = std::move(exchange);
        return reply("+ " + step.challenge + "\r\n");
    case sasl::StepKind::Done: {
        const auto& creds = exchange.credentials();
        return login(creds.user, creds.password, exchange.mechanism() == sasl::Mechanism::Plain ? "PLAIN" : "LOGIN");
    }
    case sasl::StepKind::Cancelled:
        // RFC 5034 4: a "*" response cancels; the server MUST reply -ERR.
        // Counted as a bad command, as in SMTP: AUTH and "*" cannot loop forever.
        authRejected("cancelled");
        return bad(errLine("Authentication cancelled"));
    case sasl::StepKind::BadBase64:
        authRejected("malformed");
        return bad(errLine("Invalid base64 data"));
    case sasl::StepKind::Malformed:
        authRejected("malformed");
        return bad(errLine("Invalid SASL response"));
    case sasl::StepKind::BadAuthzid:
        // As SMTP logs it: no password was checked (no oracle), but the attempt is recorded.
        log(true, core::EventLine::inSession(context_.sessionId, "auth.fail")
                      .add("svc", "pop3")
                      .add("ip", context_.client.host())
                      .add("user", exchange.credentials().user)
                      .add("result", "authzid_mismatch")
                      .str());
        return bad(errLine("[AUTH] Authentication failed"));
    }
    return bad(errLine("Authentication failed"));
}

Pop3Output Pop3Session::login(const std::string& user, const std::string& password, std::string_view mechanism) {
    core::AuthRequest request{user, password, "pop3", context_.client, context_.sessionId,
                              std::string(mechanism), tls_ ? tlsVersion_ : ""};
    request.penaltyCheckedByCaller = ports_.login != nullptr;
    core::AuthResult result = ports_.auth.authenticate(request);
    // RFC 3206 / 2449 8: [AUTH] means the credentials are wrong, [SYS/TEMP] that trying
    // again later may work. A backend outage must never look like a wrong password.
    switch (result.status) {
    case core::AuthStatus::BadCredentials:
        // Counted as an error so one connection cannot guess passwords forever (the auth
        // service also applies its penalty).
        return bad(errLine("[AUTH] Authentication failed"));
    case core::AuthStatus::TempFail:
        return reply(errLine("[SYS/TEMP] Authentication temporarily unavailable, try again later"));
    case core::AuthStatus::Blocked:
        // Too many failures from this address or for this account: refuse without
        // checking the password (no oracle) and hang up.
        return close(errLine("[SYS/TEMP] Too many failed logins, try again later"));
    case core::AuthStatus::Ok:
        break;
    }

    // POP-before-SMTP for this login, unless the account is held as compromised: its mail can
    // still be read, but it must not relay (as MAIL gets 451 4.7.1 after AUTH).
    const bool grantsOn = ports_.grants && settings_.grantLifetime.count() > 0;
    const bool held = grantsOn && ports_.hold && ports_.hold->isHeld(result.identity.user);
    const bool scoped = grantsOn && !result.identity.relayGrant;  // an app password without smtp
    const bool excluded = grantsOn && context_.noGrant != nullptr;
    const bool wantGrant = grantsOn && !held && !scoped && !excluded;
    core::MaildropPtr maildrop;
    core::MaildropStatus opened = core::MaildropStatus::TempFail;
    bool grantFailed = false;
    if (ports_.login) {
        const core::Pop3LoginOutcome o = ports_.login->open(request, result.identity, wantGrant, maildrop);
        switch (o.status) {
        case core::Pop3LoginOutcome::Status::Blocked:
            // As AuthStatus::Blocked above (the penalty was checked in the same step).
            return close(errLine("[SYS/TEMP] Too many failed logins, try again later"));
        case core::Pop3LoginOutcome::Status::Ok: opened = core::MaildropStatus::Ok; break;
        case core::Pop3LoginOutcome::Status::InUse: opened = core::MaildropStatus::InUse; break;
        case core::Pop3LoginOutcome::Status::TempFail: opened = core::MaildropStatus::TempFail; break;
        }
        grantFailed = o.grantFailed;
    } else {
        opened = ports_.maildrops.open(result.identity.mailbox, maildrop);
    }
    switch (opened) {
    case core::MaildropStatus::InUse:
        log(true, core::EventLine::inSession(context_.sessionId, "pop3.in_use")
                      .add("user", result.identity.user)
                      .add("ip", context_.client.host())
                      .str());
        // RFC 2449 8.1.1 / RFC 1939 7 (PASS): the maildrop could not be locked.
        return reply(errLine("[IN-USE] Maildrop is locked by another session"));
    case core::MaildropStatus::TempFail:
        log(true, core::EventLine::inSession(context_.sessionId, "pop3.maildrop_fail")
                      .add("user", result.identity.user)
                      .add("ip", context_.client.host())
                      .str());
        return reply(errLine("[SYS/TEMP] Unable to open maildrop, try again later"));
    case core::MaildropStatus::Ok:
        break;
    }
    if (!maildrop) return reply(errLine("[SYS/TEMP] Unable to open maildrop, try again later"));

    std::uint64_t total = 0;
    for (const auto& e : maildrop->entries()) total += e.size;
    std::size_t count = maildrop->entries().size();
    std::string who = result.identity.user;
    core::Grant grant = core::grantFor(result.identity);
    Transaction t{std::move(result.identity), std::move(maildrop), std::vector<bool>(count, false)};
    transition(std::move(t));

    log(false, core::EventLine::inSession(context_.sessionId, "pop3.login")
                   .add("user", who)
                   .add("ip", context_.client.host())
                   .add("mech", mechanism)
                   .add("tls", (tls_ ? "yes" : "no"))
                   .add("msgs", count)
                   .add("size", total)
                   .str());

    // POP-before-SMTP: a successful login lets this address relay for a while. Failing to
    // record it does not fail the login (the user can still read mail).
    if (held || scoped || excluded)
        log(true, core::EventLine::inSession(context_.sessionId, "pop3.grant_refused")
                      .add("user", who)
                      .add("ip", context_.client.host())
                      .add("reason", held ? "account_held" : scoped ? "app_password_scope" : context_.noGrant)
                      .str());
    if (wantGrant) {
        bool granted = !grantFailed;
        if (!ports_.login) {
            try {
                granted = ports_.grants->grant(context_.client, grant);
            } catch (const std::exception&) {
                granted = false;
            }
        }
        if (!granted)
            log(true, core::EventLine::inSession(context_.sessionId, "pop3.grant_fail")
                          .add("user", who)
                          .add("ip", context_.client.host())
                          .str());
    }
    return reply(okLine("Logged in, " + std::to_string(count) + " messages (" + std::to_string(total) + " octets)"));
}

Pop3Output Pop3Session::handleQuit() {
    auto* t = std::get_if<Transaction>(&state_);
    if (!t) return close(okLine("Postern POP3 server signing off"));

    // RFC 1939 6: QUIT from TRANSACTION enters UPDATE, which removes the deleted messages.
    std::vector<std::size_t> indexes;
    for (std::size_t i = 0; i < t->deleted.size(); ++i)
        if (t->deleted[i]) indexes.push_back(i);
    std::string user = t->identity.user;
    bool ok = indexes.empty() || t->maildrop->expunge(indexes);
    if (!ok) {
        log(true, core::EventLine::inSession(context_.sessionId, "pop3.expunge_fail")
                      .add("user", user)
                      .add("deleted", indexes.size())
                      .str());
        // RFC 1939 6: "-ERR some deleted messages not removed"; the lock is still released.
        return close(errLine("[SYS/TEMP] Some deleted messages not removed"));
    }
    log(false, core::EventLine::inSession(context_.sessionId, "pop3.quit")
                   .add("user", user)
                   .add("deleted", indexes.size())
                   .str());
    return close(okLine("Postern POP3 server signing off (" + std::to_string(indexes.size()) + " messages deleted)"));
}

void Pop3Session::onDisconnect() {
    if (auto* t = std::get_if<Transaction>(&state_))
        log(false, core::EventLine::inSession(context_.sessionId, "pop3.disconnect")
                       .add("user", t->identity.user)
                       .add("deleted", 0)
                       .str());
    // No UPDATE state without QUIT (RFC 1939 6): marks are dropped with the maildrop.
    closed_ = true;
    if (!std::holds_alternative<Update>(state_)) transition(Update{});
}

std::optional<Pop3Output> Pop3Session::checkMessage(const Transaction& t, std::uint32_t n) const {
    if (n == 0 || n > t.deleted.size()) return reply(errLine("No such message"));
    if (t.deleted[n - 1]) return reply(errLine("Message " + std::to_string(n) + " already deleted"));
    return std::nullopt;
}

Pop3Output Pop3Session::handleTransaction(Transaction& t, const Pop3Command& c) {
    const auto& entries = t.maildrop->entries();
    auto visible = [&](std::size_t i) { return !t.deleted[i]; };
    auto totals = [&](std::size_t& count, std::uint64_t& size) {
        count = 0;
        size = 0;
        for (std::size_t i = 0; i < entries.size(); ++i)
            if (visible(i)) {
                ++count;
                size += entries[i].size;
            }
    };

    switch (c.verb) {
    case Pop3Verb::Stat: {
        std::size_t count;
        std::uint64_t size;
        totals(count, size);
        return reply(okLine(std::to_string(count) + " " + std::to_string(size)));
    }
    case Pop3Verb::List:
    case Pop3Verb::Uidl: {
        bool list = c.verb == Pop3Verb::List;
        auto value = [&](std::size_t i) { return list ? std::to_string(entries[i].size) : entries[i].uidl; };
        if (c.message) {
            if (auto e = checkMessage(t, *c.message)) return std::move(*e);
            return reply(okLine(std::to_string(*c.message) + " " + value(*c.message - 1)));
        }
        std::string out;
        if (list) {
            std::size_t count;
            std::uint64_t size;
            totals(count, size);
            out = okLine(std::to_string(count) + " messages (" + std::to_string(size) + " octets)");
        } else {
            out = okLine("Unique-ID listing follows");
        }
        for (std::size_t i = 0; i < entries.size(); ++i)
            if (visible(i)) out += std::to_string(i + 1) + " " + value(i) + "\r\n";
        out += ".\r\n";
        return reply(std::move(out));
    }
    case Pop3Verb::Retr:
    case Pop3Verb::Top: {
        if (auto e = checkMessage(t, *c.message)) return std::move(*e);
        const std::size_t index = *c.message - 1;
        core::MessageStreamPtr stream;
        const core::MessageRead r = t.maildrop->openMessage(index, stream);
        if (r != core::MessageRead::Ok) {
            const bool gone = r == core::MessageRead::Gone;
            log(true, core::EventLine::inSession(context_.sessionId, "pop3.read_fail")
                          .add("user", t.identity.user)
                          .add("msg", *c.message)
                          .add("reason", gone ? "gone" : r == core::MessageRead::NotAFile ? "not_a_file" : "io_error")
                          .str());
            // Removed by another program since the session began: no [SYS/TEMP], a retry
            // cannot bring it back (RFC 3206 4); Dovecot answers the same way.
            if (gone) return reply(errLine("Message " + std::to_string(*c.message) + " no longer exists"));
            if (r == core::MessageRead::NotAFile)
                return reply(errLine("[SYS/PERM] Message " + std::to_string(*c.message) + " cannot be read"));
            return reply(errLine("[SYS/TEMP] Unable to read message, try again later"));
        }
        // The size LIST gave (Maildir files are never changed in place).
        Pop3Output out = reply(c.verb == Pop3Verb::Retr
                                   ? okLine(std::to_string(t.maildrop->entries()[index].size) + " octets")
                                   : okLine("Top of message follows"));
        std::optional<std::uint32_t> top;
        if (c.verb == Pop3Verb::Top) top = c.lines;
        out.body = std::make_unique<Pop3Body>(std::move(stream), top);
        return out;
    }
    case Pop3Verb::Dele: {
        if (auto e = checkMessage(t, *c.message)) return std::move(*e);
        // Only marked here; removed in UPDATE after QUIT (RFC 1939 6).
        t.deleted[*c.message - 1] = true;
        return reply(okLine("Message " + std::to_string(*c.message) + " deleted"));
    }
    case Pop3Verb::Noop:
        return reply(okLine(""));
    case Pop3Verb::Rset: {
        t.deleted.assign(t.deleted.size(), false);
        std::size_t count;
        std::uint64_t size;
        totals(count, size);
        return reply(okLine("Maildrop has " + std::to_string(count) + " messages (" + std::to_string(size) + " octets)"));
    }
    default:
        return bad(errLine("Command not valid in this state"));
    }
}

}  // namespace postern::pop3
