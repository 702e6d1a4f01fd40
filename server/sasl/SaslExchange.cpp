#include "sasl/SaslExchange.h"

#include "sasl/Base64.h"

#include "core/Idna.h"

#include <algorithm>
#include <cctype>

namespace postern::sasl {

namespace {
bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}
// "Username:" and "Password:" in base64, as every LOGIN client expects.
constexpr const char* LoginUserChallenge = "VXNlcm5hbWU6";
constexpr const char* LoginPasswordChallenge = "UGFzc3dvcmQ6";
}  // namespace

std::optional<Mechanism> parseMechanism(std::string_view name) {
    if (iequals(name, "PLAIN")) return Mechanism::Plain;
    if (iequals(name, "LOGIN")) return Mechanism::Login;
    return std::nullopt;
}

Step SaslExchange::start(std::optional<std::string_view> initialResponse) {
    if (mech_ == Mechanism::Plain) {
        if (!initialResponse) return {StepKind::Challenge, ""};
        if (*initialResponse == "=") return decodePlain("");
        return decodePlain(*initialResponse);
    }
    if (initialResponse) {
        // LOGIN with an initial response carries the user name (RFC 4954 4 allows it).
        if (*initialResponse == "*") return {StepKind::Cancelled, ""};
        auto user = *initialResponse == "=" ? std::optional<std::string>("") : decodeBase64(*initialResponse);
        if (!user) return {StepKind::BadBase64, ""};
        creds_.user = *user;
        loginStage_ = 1;
        return {StepKind::Challenge, LoginPasswordChallenge};
    }
    return {StepKind::Challenge, LoginUserChallenge};
}

Step SaslExchange::respond(std::string_view line) {
    // RFC 4954 4: a "*" response cancels the exchange.
    if (line == "*") return {StepKind::Cancelled, ""};
    if (mech_ == Mechanism::Plain) return decodePlain(line);
    auto decoded = decodeBase64(line);
    if (!decoded) return {StepKind::BadBase64, ""};
    if (loginStage_ == 0) {
        creds_.user = *decoded;
        loginStage_ = 1;
        return {StepKind::Challenge, LoginPasswordChallenge};
    }
    creds_.password = *decoded;
    if (creds_.user.empty() || creds_.password.empty() || creds_.password.find('\0') != std::string::npos ||
        creds_.user.find('\0') != std::string::npos)
        return {StepKind::Malformed, ""};
    return {StepKind::Done, ""};
}

Step SaslExchange::decodePlain(std::string_view b64) {
    auto decoded = decodeBase64(b64);
    if (!decoded) return {StepKind::BadBase64, ""};
    // RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    const std::string& m = *decoded;
    auto first = m.find('\0');
    if (first == std::string::npos) return {StepKind::Malformed, ""};
    auto second = m.find('\0', first + 1);
    if (second == std::string::npos || m.find('\0', second + 1) != std::string::npos)
        return {StepKind::Malformed, ""};
    std::string authzid = m.substr(0, first);
    creds_.user = m.substr(first + 1, second - first - 1);
    creds_.password = m.substr(second + 1);
    if (creds_.user.empty() || creds_.password.empty()) return {StepKind::Malformed, ""};
    // We do not support acting as another user: the authorization identity must be
    // empty or the authentication identity itself, in any spelling of it the login accepts
    // (case, U-label domain; some clients send the account's address as typed elsewhere),
    // as Dovecot compares them after its username normalisation.
    if (!authzid.empty() && authzid != creds_.user && core::canonicalLogin(authzid) != core::canonicalLogin(creds_.user))
        return {StepKind::BadAuthzid, ""};
    return {StepKind::Done, ""};
}

}  // namespace postern::sasl
