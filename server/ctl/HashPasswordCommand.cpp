// posternctl hash-password: prints a "{SCHEME}hash" for a passwd-file or the users table.
#include "HashPasswordCommand.h"

#include "PasswordPrompt.h"
#include "auth/PasswordScheme.h"

#include <openssl/crypto.h>

#include <ostream>

namespace postern::ctl {

int runHashPassword(CommandContext& c) {
    auth::HashScheme scheme = auth::DefaultHashScheme;
    const auto& args = c.args;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string value;
        if (args[i] == "--scheme" && i + 1 < args.size()) {
            value = args[++i];
        } else if (args[i].rfind("--scheme=", 0) == 0) {
            value = args[i].substr(9);
        } else if (args[i] == "--scheme") {
            c.err << "posternctl hash-password: --scheme needs a value\n";
            return ExitUsage;
        } else if (!args[i].empty() && args[i][0] != '-') {
            c.err << "posternctl hash-password: the password is read from the terminal or stdin, "
                     "never from the command line\n";
            return ExitUsage;
        } else {
            c.err << "posternctl hash-password: unknown option " << args[i] << "\n";
            return ExitUsage;
        }
        auto parsed = auth::parseHashScheme(value);
        if (!parsed) {
            c.err << "posternctl hash-password: unknown scheme '" << value
                  << "' (use ARGON2ID, BCRYPT or SHA512-CRYPT)\n";
            return ExitUsage;
        }
        scheme = *parsed;
    }

    auto password = readNewPassword(c.in, c.err);
    if (!password) {
        return ExitDataError;
    }
    int rc = ExitOk;
    try {
        c.out << auth::makePasswordHash(scheme, *password) << "\n";
    } catch (const std::exception& e) {
        c.err << "posternctl hash-password: " << e.what() << "\n";
        rc = ExitSoftware;
    }
    OPENSSL_cleanse(password->data(), password->size());
    return rc;
}

}  // namespace postern::ctl
