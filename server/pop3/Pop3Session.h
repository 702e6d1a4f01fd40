// The POP3 session state machine: RFC 1939 (AUTHORIZATION/TRANSACTION/UPDATE), RFC 2449
// (CAPA, response codes), RFC 2595 (STLS), RFC 5034 (AUTH), RFC 3206 ([AUTH], [SYS/TEMP]).
#pragma once

#include "core/AccountSecurity.h"
#include "core/AuthService.h"
#include "core/ClientAddress.h"
#include "core/GrantStore.h"
#include "core/MaildropService.h"
#include "core/Pop3Login.h"
#include "pop3/Pop3Body.h"
#include "pop3/Pop3Command.h"
#include "sasl/SaslExchange.h"

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace postern::pop3 {

struct Pop3Settings {
    bool allowPlaintextAuth = false;       // pop3.allow_plaintext_auth: USER/PASS, PLAIN, LOGIN without TLS
    bool tlsAvailable = false;             // a TLS context is configured: offer STLS
    std::string greetingHost;              // shown in the greeting
    // The defaults of the keys below live in the key table (server/config/ConfigSchema.cpp);
    // the app fills these fields from the loaded config.
    std::chrono::seconds grantLifetime{0};  // pop_before_smtp.lifetime; 0 = POP-before-SMTP off
    std::size_t maxBadCommands = 0;         // pop3.max_errors; 0 = unlimited

    bool operator==(const Pop3Settings&) const = default;
};

// The ports a session asks; all owned by the caller and outliving the session.
struct Pop3Ports {
    core::AuthService& auth;
    core::MaildropService& maildrops;
    core::GrantStore* grants;  // nullptr = POP-before-SMTP off
    // Cluster: penalty check, maildrop lease and grant of a verified login in one step
    // (then `maildrops` and `grants` are not asked by the session); nullptr = separately.
    core::Pop3Login* login = nullptr;
    // Compromised-account holds (nullptr: detection off): a held account still reads its
    // mail but gets no POP-before-SMTP grant.
    const core::AccountHold* hold = nullptr;
};

struct SessionContext {
    std::string sessionId;
    core::ClientAddress client;
    bool tls = false;  // implicit TLS (port 995) or not
    // Why this client address never earns a POP-before-SMTP grant (a balancer's own address,
    // pop_before_smtp.exclude_networks: logged as the reason), or nullptr when it may.
    const char* noGrant = nullptr;
};

struct Pop3Output {
    std::string bytes;  // to send: complete CRLF-terminated lines, possibly multi-line
    enum class Action {
        None,
        StartTls,  // send `bytes`, then do the TLS handshake and call onTlsStarted(). The
                   // connection MUST discard any input already buffered after the STLS
                   // line (plaintext injection, cf. CVE-2011-0411).
        Close,     // send `bytes`, then close the connection
    } action = Action::None;
    // RETR and TOP: after `bytes` (the +OK line), every part of the message, until Done.
    // Failed: the connection must close.
    std::unique_ptr<Pop3Body> body;
};

// One POP3 session: lines in, replies and actions out. No sockets, no files: storage is
// reached through the ports. Not thread-safe (the connection's thread owns it).
// The maildrop (and with it the lock) exists only in the Transaction state, so it cannot
// be touched before login; it is released on QUIT, on onDisconnect() and on destruction.
// Messages are deleted only by QUIT in the Transaction state (RFC 1939 6, UPDATE).
class Pop3Session {
public:
    Pop3Session(const Pop3Settings& settings, Pop3Ports ports, SessionContext context);
    Pop3Session(const Pop3Session&) = delete;
    Pop3Session& operator=(const Pop3Session&) = delete;

    // "+OK ... ready" to send on connect.
    Pop3Output greeting();
    // One client line without its CRLF. After Action::Close, isClosed() is true and
    // further lines get an empty output with Action::Close.
    Pop3Output onLine(std::string_view line);
    // After the STLS handshake succeeded: back to a fresh AUTHORIZATION state, tls = true.
    void onTlsStarted();
    // The TLS version for the login log (after the handshake; default "yes").
    void setTlsVersion(std::string version) { tlsVersion_ = std::move(version); }
    // The connection dropped without QUIT: nothing is deleted, the lock is released.
    void onDisconnect();
    bool isClosed() const { return closed_; }
    // Logged in: past the AUTHORIZATION state.
    bool loggedIn() const { return !std::holds_alternative<Authorization>(state_); }

    // "authorization" | "transaction" | "update" (for tests and debug logs).
    std::string_view stateName() const;

private:
    struct Authorization {
        std::optional<std::string> pendingUser;  // after USER, until PASS
        std::optional<sasl::SaslExchange> sasl;  // an AUTH exchange waiting for a client line
    };
    struct Transaction {
        core::AuthIdentity identity;
        core::MaildropPtr maildrop;
        std::vector<bool> deleted;  // one per maildrop entry, set by DELE, cleared by RSET
    };
    struct Update {};
    using State = std::variant<Authorization, Transaction, Update>;

    void transition(State next);
    bool plaintextAllowed() const { return settings_.allowPlaintextAuth || tls_; }

    Pop3Output dispatch(const Pop3Command& command);
    Pop3Output handleCapa();
    Pop3Output handleStls();
    Pop3Output handleUser(const Pop3Command& command);
    Pop3Output handlePass(const Pop3Command& command);
    Pop3Output handleAuth(const Pop3Command& command);
    Pop3Output handleSaslLine(std::string_view line);
    Pop3Output handleSaslStep(sasl::SaslExchange exchange, const sasl::Step& step);
    Pop3Output login(const std::string& user, const std::string& password, std::string_view mechanism);
    Pop3Output handleQuit();
    Pop3Output handleTransaction(Transaction& t, const Pop3Command& command);
    // nullopt: message `n` (1-based) exists and is not deleted; else the -ERR reply.
    std::optional<Pop3Output> checkMessage(const Transaction& t, std::uint32_t n) const;

    Pop3Output bad(std::string reply);  // counts a protocol error; may close the session
    Pop3Output close(std::string reply);
    void log(bool warning, const std::string& text) const;
    void authRejected(std::string_view reason) const;

    Pop3Settings settings_;
    Pop3Ports ports_;
    SessionContext context_;
    bool tls_;
    std::string tlsVersion_ = "yes";  // login log: the version when tls_
    State state_;
    bool closed_ = false;
    bool awaitingTls_ = false;
    std::size_t badCommands_ = 0;
};

}  // namespace postern::pop3
