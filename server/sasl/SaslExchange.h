// SASL server side shared by SMTP AUTH (RFC 4954) and POP3 AUTH (RFC 5034):
// PLAIN (RFC 4616) and LOGIN. Pure logic: lines in, steps out.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::sasl {

enum class Mechanism { Plain, Login };

std::optional<Mechanism> parseMechanism(std::string_view name);  // case-insensitive

struct Credentials {
    std::string user;
    std::string password;
};

enum class StepKind {
    Challenge,    // send "334 <challenge>" / "+ <challenge>" and feed the next line to respond()
    Done,         // credentials complete: check them
    Cancelled,    // client sent "*": SMTP 501 5.0.0, POP3 -ERR
    BadBase64,    // SMTP 501 5.5.2
    Malformed,    // decoded data is not a valid PLAIN message: 501 5.5.2
    BadAuthzid,   // PLAIN authorization identity differs from the authentication identity: 535
};

struct Step {
    StepKind kind;
    std::string challenge;  // base64, for Challenge
};

// One exchange. Not thread-safe; a session holds at most one.
class SaslExchange {
public:
    explicit SaslExchange(Mechanism mech) : mech_(mech) {}

    // initialResponse: the optional argument after the mechanism ("=" means empty).
    Step start(std::optional<std::string_view> initialResponse);
    // Next client line (without CRLF).
    Step respond(std::string_view line);

    const Credentials& credentials() const { return creds_; }
    Mechanism mechanism() const { return mech_; }

private:
    Step decodePlain(std::string_view b64);

    Mechanism mech_;
    int loginStage_ = 0;  // LOGIN: 0 = want user, 1 = want password
    Credentials creds_;
};

}  // namespace postern::sasl
