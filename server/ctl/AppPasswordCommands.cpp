// posternctl user app-password add|list|revoke, user require-app-password: per-account app
// passwords in the configured backend, through its plugin (ABI 4 entry points).
#include "AppPasswordCommands.h"

#include "CtlSupport.h"
#include "UserStore.h"
#include "api/AppPassword.h"
#include "auth/PasswordScheme.h"
#include "core/Duration.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <chrono>
#include <ctime>
#include <memory>
#include <ostream>

namespace postern::ctl {

namespace {

namespace api = plugins::api;
namespace ap = plugins::api::apppw;

// n characters of lower-case base32 from the kernel's CSPRNG (256 % 32 == 0: unbiased).
std::string randomBase32(std::size_t n) {
    static constexpr char Alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    std::array<unsigned char, 64> bytes{};
    if (n > bytes.size() || RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) {
        throw CtlError(ExitSoftware, "cannot get random bytes");
    }
    std::string out;
    for (std::size_t i = 0; i < n; ++i) {
        out += Alphabet[bytes[i] % 32];
    }
    OPENSSL_cleanse(bytes.data(), bytes.size());
    return out;
}

std::int64_t nowSeconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Unix seconds -> "2026-12-05T08:00:00Z"; 0 -> fallback.
std::string timeText(std::int64_t t, const char* fallback) {
    if (t == 0) {
        return fallback;
    }
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Fails an answer the way user commands do, except that an unknown app password id is not an
// unknown user (the message says which).
void check(UserStore& store, const api::WriteAnswer& a, const std::string& address) {
    if (a.status == api::WriteStatus::UnknownUser && !a.detail.empty() && a.detail.rfind("no such user", 0) != 0) {
        throw CtlError(ExitNoUser, a.detail);
    }
    if (a.status == api::WriteStatus::Unsupported) {
        throw CtlError(ExitConfig, "backend '" + store.backend().name + "' (plugin " + store.backend().plugin +
                                       "): " + a.detail);
    }
    store.check(a, address);
}

}  // namespace

int runAppPasswordAdd(CommandContext& c) {
    return guarded(c, "user app-password add", [&] {
        Options o = parseOptions(c.args, {"--scope", "--expires", "--networks", "--label"}, {});
        expectPositional(o, 1, 1, AppPasswordAddCommand);
        api::NewAppPassword app;
        app.user = checkAddress(o.positional[0]);
        const unsigned scopes = ap::parseScopes(o.value("--scope"));
        if (scopes == 0) {
            throw CtlError(ExitUsage, "--scope must be smtp, pop3 or all");
        }
        app.scopes = ap::scopesText(scopes);
        app.created = nowSeconds();
        if (const std::string e = o.value("--expires"); !e.empty() && e != "never") {
            std::chrono::milliseconds d{};
            try {
                d = core::parseDuration(e);
            } catch (const std::exception& ex) {
                throw CtlError(ExitDataError, std::string("--expires: ") + ex.what());
            }
            // At least a second (500ms made a password expired when printed), at most ten years
            // (created + a huge duration overflowed).
            if (d < std::chrono::seconds(1) || d > std::chrono::hours(24 * 3660)) {
                throw CtlError(ExitDataError, "--expires must be a duration from 1s to 3660d (90d, 12h) or never");
            }
            app.expires = app.created + std::chrono::duration_cast<std::chrono::seconds>(d).count();
        }
        for (const auto& n : ap::splitList(o.value("--networks"))) {
            if (!ap::Network::parse(n)) {
                throw CtlError(ExitDataError, "--networks: '" + n + "' is not an address or CIDR network");
            }
            app.networks += (app.networks.empty() ? "" : ",") + n;
        }
        if (!ap::validNetworks(app.networks)) {
            throw CtlError(ExitDataError, "--networks: at most " + std::to_string(ap::MaxNetworks) + " networks");
        }
        app.label = o.value("--label");
        if (!app.label.empty() && !ap::validLabel(app.label)) {
            throw CtlError(ExitDataError, "--label: 1 to 64 of A-Z a-z 0-9 . _ @ + -");
        }
        UserSession s = openUserSession(o);
        const auth::HashScheme scheme = newHashScheme(s.config);
        app.id = randomBase32(ap::IdLength);
        std::string password = app.id + "-" + randomBase32(ap::SecretLength);
        try {
            app.passwordHash = auth::makePasswordHash(scheme, password);
            check(*s.store, s.store->backendApi().addAppPassword(app), app.user);
        } catch (...) {
            OPENSSL_cleanse(password.data(), password.size());
            throw;
        }
        c.out << "added app password " << app.id << " for " << app.user << " (scope " << app.scopes << ", expires "
              << timeText(app.expires, "never") << ", networks " << (app.networks.empty() ? "any" : app.networks)
              << "); it is shown only now:\n"
              << password << "\n";
        OPENSSL_cleanse(password.data(), password.size());
        return static_cast<int>(ExitOk);
    });
}

int runAppPasswordList(CommandContext& c) {
    return guarded(c, "user app-password list", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 1, 1, AppPasswordListCommand);
        const std::string address = checkAddress(o.positional[0]);
        UserSession s = openUserSession(o);
        bool require = false;
        std::vector<api::AppPasswordInfo> list;
        check(*s.store, s.store->backendApi().listAppPasswords(address, require, list), address);
        const std::int64_t now = nowSeconds();
        auto status = [&](const api::AppPasswordInfo& i) {
            return i.revoked != 0 ? "revoked" : (i.expires != 0 && i.expires <= now) ? "expired" : "active";
        };
        if (o.has("--json")) {
            auto j = jsonObject();
            j->set("user", address);
            j->set("require_app_password", require);
            Poco::JSON::Array::Ptr a = new Poco::JSON::Array;
            auto opt = [](std::int64_t t) { return t == 0 ? Poco::Dynamic::Var() : Poco::Dynamic::Var(timeText(t, "")); };
            for (const auto& i : list) {
                auto e = jsonObject();
                e->set("id", i.id);
                e->set("label", i.label);
                e->set("scopes", i.scopes);
                e->set("status", std::string(status(i)));
                e->set("expires", opt(i.expires));
                e->set("networks", i.networks.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(i.networks));
                e->set("created", opt(i.created));
                e->set("last_used", opt(i.lastUsed));
                e->set("last_ip", i.lastIp.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(i.lastIp));
                e->set("revoked", opt(i.revoked));
                a->add(e);
            }
            j->set("app_passwords", a);
            writeJson(c.out, j);
            return static_cast<int>(ExitOk);
        }
        c.out << "require-app-password: " << (require ? "on" : "off") << "\n";
        c.out << "ID\tSTATUS\tSCOPE\tEXPIRES\tNETWORKS\tCREATED\tLAST-USED\tLAST-IP\tLABEL\n";
        for (const auto& i : list) {
            c.out << i.id << "\t" << status(i) << "\t" << i.scopes << "\t" << timeText(i.expires, "never") << "\t"
                  << (i.networks.empty() ? "any" : i.networks) << "\t" << timeText(i.created, "-") << "\t"
                  << timeText(i.lastUsed, "-") << "\t" << (i.lastIp.empty() ? "-" : i.lastIp) << "\t"
                  << (i.label.empty() ? "-" : i.label) << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

int runAppPasswordRevoke(CommandContext& c) {
    return guarded(c, "user app-password revoke", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 2, 2, AppPasswordRevokeCommand);
        const std::string address = checkAddress(o.positional[0]);
        const std::string id = o.positional[1];
        if (!ap::validId(id)) {
            throw CtlError(ExitDataError, "'" + id + "' is not an app password id (8 of a-z, 2-7)");
        }
        UserSession s = openUserSession(o);
        check(*s.store, s.store->backendApi().revokeAppPassword(address, id), address);
        c.out << "revoked app password " << id << " of " << address << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runRequireAppPassword(CommandContext& c) {
    return guarded(c, "user require-app-password", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 2, 2, RequireAppPasswordCommand);
        const std::string address = checkAddress(o.positional[0]);
        const std::string& v = o.positional[1];
        if (v != "on" && v != "off") {
            throw CtlError(ExitUsage, "expected on or off, not '" + v + "'");
        }
        UserSession s = openUserSession(o);
        check(*s.store, s.store->backendApi().setRequireAppPassword(address, v == "on"), address);
        c.out << "require-app-password " << v << " for " << address << "\n";
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
