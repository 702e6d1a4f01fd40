// posternctl auth test USER: the configured backend chain, asked exactly as posternd asks it.
#include "AuthTestCommand.h"

#include "CtlSupport.h"
#include "PasswordPrompt.h"
#include "auth/AuthFacade.h"
#include "auth/PluginLoader.h"

#include <Poco/AutoPtr.h>
#include <Poco/ConsoleChannel.h>
#include <Poco/FormattingChannel.h>
#include <Poco/Logger.h>
#include <Poco/PatternFormatter.h>

#include <openssl/crypto.h>

#include <ostream>

namespace postern::ctl {

int runAuthTest(CommandContext& c) {
    return guarded(c, "auth test", [&] {
        Options o = parseOptions(c.args, {"--service"}, {"--verbose"});
        expectPositional(o, 1, 1, AuthTestCommand);
        const std::string service = o.value("--service", "smtp");
        if (service != "smtp" && service != "pop3") {
            throw CtlError(ExitUsage, "--service must be smtp or pop3");
        }
        // The daemon's log lines (postern.auth, postern.pg, plugins) go to stderr with
        // --verbose and nowhere otherwise; stdout carries only the answer.
        if (o.has("--verbose")) {
            Poco::AutoPtr<Poco::PatternFormatter> f = new Poco::PatternFormatter("%p %s: %t");
            Poco::AutoPtr<Poco::FormattingChannel> ch = new Poco::FormattingChannel(f, new Poco::ConsoleChannel);
            Poco::Logger::setChannel("", ch);
            Poco::Logger::setLevel("", Poco::Message::PRIO_DEBUG);
        } else {
            Poco::Logger::setLevel("", Poco::Message::PRIO_FATAL);
        }
        config::ServerConfig cfg = loadConfig(o);

        const std::string pluginDir = cfg.pluginDir.empty() ? layout().pluginDir : cfg.pluginDir;
        auth::PluginLoader loader(pluginDir);
        std::vector<auth::BackendHandle> handles;
        std::vector<auth::BackendBinding> chain;
        for (const auto& b : cfg.backends) {
            try {
                handles.push_back(loader.load(b.plugin, b.name, b.params));
            } catch (const std::exception& e) {
                throw CtlError(ExitUnavailable, "backend '" + b.name + "': " + e.what());
            }
            chain.push_back({b.name, handles.back().get(), b.domains});
        }
        auth::AuthFacade facade(chain);

        auto password = readPassword(c.in, c.err);
        if (!password) {
            throw CtlError(ExitDataError, "no password");
        }
        core::AuthRequest request;
        request.user = o.positional[0];
        request.password = *password;
        request.service = service;
        request.client.ip = Poco::Net::IPAddress("127.0.0.1");  // as a local client
        request.sessionId = "posternctl";
        auth::AuthFacade::Explanation why;
        core::AuthResult result = facade.authenticate(request, why);
        OPENSSL_cleanse(request.password.data(), request.password.size());
        OPENSSL_cleanse(password->data(), password->size());

        c.out << "result=" << why.result << " backend=" << why.backend;
        if (result.status == core::AuthStatus::Ok) {
            std::string senders;
            for (const auto& s : result.identity.senderAddresses) {
                senders += (senders.empty() ? "" : ",") + s;
            }
            c.out << " user=" << result.identity.user << " mailbox=" << result.identity.mailbox
                  << " senders=" << senders;
        }
        if (!why.detail.empty()) {
            c.out << " detail=\"" << why.detail << "\"";
        }
        c.out << "\n";
        switch (result.status) {
        case core::AuthStatus::Ok: return static_cast<int>(ExitOk);
        case core::AuthStatus::BadCredentials: return static_cast<int>(ExitNoPerm);
        case core::AuthStatus::Blocked:  // a login block is temporary, like a backend outage
        case core::AuthStatus::TempFail: break;
        }
        return static_cast<int>(ExitTempFail);
    });
}

}  // namespace postern::ctl
