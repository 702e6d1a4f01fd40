// posternctl hash-password: prints a "{SCHEME}hash" for a passwd-file or the users table.
#include "HashPasswordCommand.h"

#include "CtlSupport.h"
#include "PasswordPrompt.h"
#include "auth/PasswordScheme.h"

#include <openssl/crypto.h>

#include <ostream>

namespace postern::ctl {

int runHashPassword(CommandContext& c) {
    return guarded(c, "hash-password", [&] {
        // Global options (-c, --backend, -D) are accepted and have no effect: no configuration
        // is read, the scheme is the argument or ARGON2ID.
        Options o = parseOptions(c.args, {"--scheme"}, {});
        if (!o.positional.empty()) {
            throw CtlError(ExitUsage, "the password is read from the terminal or stdin, never from the command line");
        }
        auth::HashScheme scheme = auth::DefaultHashScheme;
        if (auto it = o.values.find("--scheme"); it != o.values.end()) {
            const std::string& value = it->second.back();
            auto parsed = auth::parseHashScheme(value);
            if (!parsed) {
                throw CtlError(ExitUsage, "unknown scheme '" + value + "' (use ARGON2ID, BCRYPT or SHA512-CRYPT)");
            }
            scheme = *parsed;
        }
        auto password = readNewPassword(c.in, c.err);
        if (!password) {
            return static_cast<int>(ExitDataError);
        }
        int rc = ExitOk;
        try {
            c.out << auth::makePasswordHash(scheme, *password) << "\n";
        } catch (...) {
            OPENSSL_cleanse(password->data(), password->size());
            throw;  // guarded(): ExitSoftware with the message
        }
        OPENSSL_cleanse(password->data(), password->size());
        return rc;
    });
}

}  // namespace postern::ctl
