// Port: check a login (SMTP AUTH, POP3 USER/PASS/AUTH) against the backend chain.
#pragma once

#include "core/ClientAddress.h"

#include <map>
#include <cstddef>
#include <string>
#include <vector>

namespace postern::core {

enum class AuthStatus {
    Ok,
    BadCredentials,  // wrong password, unknown user or disabled: one answer to the client
    TempFail,        // a backend could not answer: 454 4.7.0 / -ERR [SYS/TEMP]
    Blocked,         // too many failures from this IP or for this account: 454 4.7.0 /
                     // -ERR [SYS/TEMP], then disconnect; the password was not checked
};

struct AuthIdentity {
    std::string user;                          // canonical login
    std::vector<std::string> senderAddresses;  // lower-cased addresses MAIL FROM may use
    std::string mailbox;                       // mailbox location (relative to mail root)
    std::map<std::string, std::string> attributes;  // backend extras (e.g. per-user rate limits)
    // False when the login used an app password without the smtp scope: a POP3 login then
    // gives no POP-before-SMTP grant (the password could not send by AUTH either).
    bool relayGrant = true;
};

// The longest login name (an address: RFC 5321 4.5.3.1, 64 + '@' + 255) any backend can hold.
inline constexpr std::size_t MaxLoginLength = 320;

struct AuthRequest {
    std::string user;
    std::string password;
    std::string service;  // "smtp" | "pop3"
    ClientAddress client;
    std::string sessionId;
    // For the login log (abuse/AccountSecurity): the SASL mechanism or "USER"/"APOP", and
    // the TLS version of the session ("" = no TLS; "yes" when the version is unknown).
    std::string mechanism{};
    std::string tls{};
    // The caller checks the failed-login penalty itself after a success, in the same
    // statement that takes the maildrop lease (app/ClusterPop3Login: POP3 in a cluster).
    // The penalty decorator then checks only after a failure (still before answering, so a
    // blocked client gets the same answer whatever its password).
    bool penaltyCheckedByCaller = false;
};

struct AuthResult {
    AuthStatus status = AuthStatus::TempFail;  // fail closed
    AuthIdentity identity;
};

// Thread-safe; blocking. Logs one line per attempt itself (never the password).
class AuthService {
public:
    virtual ~AuthService() = default;
    virtual AuthResult authenticate(const AuthRequest& request) = 0;
};

}  // namespace postern::core
