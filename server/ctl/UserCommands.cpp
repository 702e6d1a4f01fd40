// posternctl user ...: accounts in the configured PostgreSQL or passwd-file backend.
#include "UserCommands.h"

#include "core/MailboxLocation.h"

#include "CtlSupport.h"
#include "GrantCommands.h"
#include "PasswordPrompt.h"
#include "PgAdmin.h"
#include "UserStore.h"
#include "auth/PasswordScheme.h"
#include "config/ConfigSchema.h"

#include <openssl/crypto.h>

#include <memory>

#include <optional>
#include <ostream>

namespace postern::ctl {

namespace {

// Reads the new password and hashes it with auth.default_scheme; the clear text is wiped.
std::string newHash(CommandContext& c, const config::ServerConfig& cfg) {
    const auth::HashScheme scheme = newHashScheme(cfg);
    auto password = readNewPassword(c.in, c.err);
    if (!password) {
        throw CtlError(ExitDataError, "no password set");
    }
    std::string hash;
    try {
        hash = auth::makePasswordHash(scheme, *password);
    } catch (...) {
        OPENSSL_cleanse(password->data(), password->size());
        throw;
    }
    OPENSSL_cleanse(password->data(), password->size());
    return hash;
}

int simple(CommandContext& c, const Command& command,
           void (*action)(UserSession&, const std::string&, CommandContext&), const char* done) {
    const std::string name(command.name);
    return guarded(c, name.c_str(), [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1, command);
        const std::string address = checkAddress(o.positional[0]);
        UserSession s = openUserSession(o);
        action(s, address, c);
        c.out << done << " " << address << "\n";
        return static_cast<int>(ExitOk);
    });
}

// A mailbox as the server accepts it (core::normalizeMailboxLocation) and as a passwd-file
// field can hold: a blank or ':' would start another field there, a line break another
// account (a provisioning panel passing a customer's path could add a user or a senders=
// right).
bool validMailbox(const std::string& m) {
    if (!core::normalizeMailboxLocation(m)) return false;
    for (char c : m)
        if (c == ' ' || c == ':') return false;
    return true;
}

}  // namespace

int runUserAdd(CommandContext& c) {
    return guarded(c, "user add", [&] {
        Options o = parseOptions(c.args, {"--mailbox", "--quota", "--sender"}, {"--disabled"});
        expectPositional(o, 1, 1, UserAddCommand);
        NewUser u;
        u.address = checkAddress(o.positional[0]);
        u.enabled = !o.has("--disabled");
        u.mailbox = o.value("--mailbox");
        if (!u.mailbox.empty() && !validMailbox(u.mailbox)) {
            throw CtlError(ExitDataError,
                           "--mailbox must be a path relative to server.mail_root: no leading '/', no empty, '.' or "
                           "'..' part, no blank, ':' or control character");
        }
        if (!o.value("--quota").empty()) {
            try {
                u.quotaBytes = config::parseSize(o.value("--quota"));
            } catch (const std::exception& e) {
                throw CtlError(ExitDataError, std::string("--quota: ") + e.what());
            }
        }
        if (auto it = o.values.find("--sender"); it != o.values.end()) {
            for (const auto& s : it->second) {
                u.senders.push_back(checkAddress(s, "sender address"));
            }
        }
        UserSession s = openUserSession(o);
        s.store->checkCanAdd(u.address);  // before the password is asked for
        u.passwordHash = newHash(c, s.config);
        s.store->add(u);
        c.out << "added " << u.address << " (" << schemeOf(u.passwordHash) << ", " << s.store->describe() << ")\n";
        return static_cast<int>(ExitOk);
    });
}

int runUserPasswd(CommandContext& c) {
    return guarded(c, "user passwd", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1, UserPasswdCommand);
        const std::string address = checkAddress(o.positional[0]);
        UserSession s = openUserSession(o);
        s.store->requireUser(address);
        s.store->setPassword(address, newHash(c, s.config));
        c.out << "password changed for " << address << "\n";
        revokeGrantsOf(s.config, GrantOwner::User, address, c);
        return static_cast<int>(ExitOk);
    });
}

int runUserDisable(CommandContext& c) {
    return simple(c, UserDisableCommand,
                  [](UserSession& s, const std::string& a, CommandContext& c) {
                      s.store->setEnabled(a, false);
                      revokeGrantsOf(s.config, GrantOwner::User, a, c);
                  },
                  "disabled");
}

int runUserEnable(CommandContext& c) {
    return simple(c, UserEnableCommand,
                  [](UserSession& s, const std::string& a, CommandContext&) { s.store->setEnabled(a, true); }, "enabled");
}

int runUserDelete(CommandContext& c) {
    return simple(c, UserDeleteCommand,
                  [](UserSession& s, const std::string& a, CommandContext& c) {
                      s.store->remove(a);
                      revokeGrantsOf(s.config, GrantOwner::User, a, c);  // a deleted account relays no more, as a disabled one
                  },
                  "deleted");
}

int runUserList(CommandContext& c) {
    return guarded(c, "user list", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 0, 1, UserListCommand);
        const std::string domain = o.positional.empty() ? "" : checkDomain(o.positional[0]);
        UserSession s = openUserSession(o);
        const auto users = s.store->list(domain);
        if (o.has("--json")) {
            Poco::JSON::Array::Ptr a = new Poco::JSON::Array;
            for (const auto& u : users) {
                auto j = jsonObject();
                j->set("address", u.address);
                j->set("enabled", u.enabled);
                j->set("mailbox", u.mailbox.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(u.mailbox));
                a->add(j);
            }
            writeJson(c.out, a);
            return static_cast<int>(ExitOk);
        }
        for (const auto& u : users) {
            c.out << u.address << "\t" << (u.enabled ? "enabled" : "disabled") << "\t"
                  << (u.mailbox.empty() ? "-" : u.mailbox) << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

int runUserShow(CommandContext& c) {
    return guarded(c, "user show", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 1, 1, UserShowCommand);
        const std::string address = checkAddress(o.positional[0]);
        UserSession s = openUserSession(o);
        UserInfo u = s.store->show(address);
        if (o.has("--json")) {
            auto j = jsonObject();
            j->set("address", u.address);
            j->set("backend", s.store->describe());
            j->set("enabled", u.enabled);
            j->set("scheme", u.scheme);
            j->set("mailbox", u.mailbox.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(u.mailbox));
            j->set("quota", u.quotaBytes);
            j->set("senders", jsonArray(u.senders));
            j->set("aliases", jsonArray(u.aliases));
            j->set("created", u.created.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(u.created));
            j->set("updated", u.updated.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(u.updated));
            writeJson(c.out, j);
            return static_cast<int>(ExitOk);
        }
        auto join = [](const std::vector<std::string>& v) {
            std::string out;
            for (const auto& x : v) {
                out += (out.empty() ? "" : ",") + x;
            }
            return out.empty() ? std::string("-") : out;
        };
        c.out << "address: " << u.address << "\n"
              << "backend: " << s.store->describe() << "\n"
              << "enabled: " << (u.enabled ? "yes" : "no") << "\n"
              << "scheme: " << u.scheme << "\n"
              << "mailbox: " << (u.mailbox.empty() ? "(default)" : u.mailbox) << "\n"
              << "quota: " << u.quotaBytes << "\n"
              << "senders: " << join(u.senders) << "\n"
              << "aliases: " << join(u.aliases) << "\n";
        if (!u.created.empty()) {
            c.out << "created: " << u.created << "\n"
                  << "updated: " << u.updated << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
