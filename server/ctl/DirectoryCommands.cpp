// posternctl alias ... and domain ...: the PostgreSQL backend's aliases and domains.
#include "DirectoryCommands.h"

#include "CtlSupport.h"
#include "GrantCommands.h"
#include "PgAdmin.h"

#include <ostream>

namespace postern::ctl {

namespace {

PgAdmin openPg(const Options& o) {
    config::ServerConfig cfg = loadConfig(o);
    return PgAdmin(chooseBackend(cfg, o, {"postgres"}));
}

}  // namespace

int runAliasAdd(CommandContext& c) {
    return guarded(c, "alias add", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 2, 1000, AliasAddCommand);
        const std::string alias = checkAddress(o.positional[0], "alias");
        std::vector<std::string> dests;
        for (std::size_t i = 1; i < o.positional.size(); ++i) {
            dests.push_back(checkAddress(o.positional[i], "destination"));
        }
        PgAdmin pg = openPg(o);
        pg.addAlias(alias, dests);
        for (const auto& d : dests) {
            c.out << "added " << alias << " -> " << d << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

int runAliasDelete(CommandContext& c) {
    return guarded(c, "alias delete", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1000, AliasDeleteCommand);
        const std::string alias = checkAddress(o.positional[0], "alias");
        std::vector<std::string> dests;
        for (std::size_t i = 1; i < o.positional.size(); ++i) {
            dests.push_back(checkAddress(o.positional[i], "destination"));
        }
        PgAdmin pg = openPg(o);
        pg.removeAlias(alias, dests);
        c.out << "deleted " << alias << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runAliasList(CommandContext& c) {
    return guarded(c, "alias list", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 0, 1, AliasListCommand);
        std::string filter;
        if (!o.positional.empty()) {
            filter = o.positional[0].find('@') != std::string::npos ? checkAddress(o.positional[0], "alias")
                                                                    : checkDomain(o.positional[0]);
        }
        PgAdmin pg = openPg(o);
        const auto aliases = pg.listAliases(filter);
        if (o.has("--json")) {
            Poco::JSON::Array::Ptr out = new Poco::JSON::Array;
            for (const auto& [a, d] : aliases) {
                auto j = jsonObject();
                j->set("alias", a);
                j->set("destination", d);
                out->add(j);
            }
            writeJson(c.out, out);
            return static_cast<int>(ExitOk);
        }
        for (const auto& [a, d] : aliases) {
            c.out << a << " -> " << d << "\n";
        }
        return static_cast<int>(ExitOk);
    });
}

int runDomainAdd(CommandContext& c) {
    return guarded(c, "domain add", [&] {
        Options o = parseOptions(c.args, {}, {});
        expectPositional(o, 1, 1, DomainAddCommand);
        const std::string domain = checkDomain(o.positional[0]);
        PgAdmin pg = openPg(o);
        pg.addDomain(domain);
        c.out << "added domain " << domain << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runDomainDelete(CommandContext& c) {
    return guarded(c, "domain delete", [&] {
        Options o = parseOptions(c.args, {}, {"--force"});
        expectPositional(o, 1, 1, DomainDeleteCommand);
        const std::string domain = checkDomain(o.positional[0]);
        PgAdmin pg = openPg(o);
        pg.removeDomain(domain, o.has("--force"));
        c.out << "deleted domain " << domain << "\n";
        // With --force its users went too: none of them relays on an earlier POP3 login
        // (review finding), as after 'user delete'.
        if (o.has("--force")) revokeGrantsOf(loadConfig(o), GrantOwner::Domain, domain, c);
        return static_cast<int>(ExitOk);
    });
}

int runDomainList(CommandContext& c) {
    return guarded(c, "domain list", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 0, 0, DomainListCommand);
        PgAdmin pg = openPg(o);
        const auto domains = pg.listDomains();
        if (o.has("--json")) {
            Poco::JSON::Array::Ptr out = new Poco::JSON::Array;
            for (const auto& d : domains) {
                auto j = jsonObject();
                j->set("domain", d.name);
                j->set("enabled", d.enabled);
                j->set("users", d.users);
                j->set("aliases", d.aliases);
                out->add(j);
            }
            writeJson(c.out, out);
            return static_cast<int>(ExitOk);
        }
        for (const auto& d : domains) {
            c.out << d.name << "\t" << (d.enabled ? "enabled" : "disabled") << "\t" << d.users << " users\t"
                  << d.aliases << " aliases\n";
        }
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
