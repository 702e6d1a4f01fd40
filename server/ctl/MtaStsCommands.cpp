#include "MtaStsCommands.h"

#include "CtlSupport.h"
#include "mtasts/PolicyCache.h"
#include "queue/FileOps.h"

#include <cerrno>
#include <ctime>
#include <ostream>

namespace postern::ctl {

namespace {

std::string isoTime(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

int runMtaStsShow(CommandContext& c) {
    return guarded(c, "mta-sts show", [&] {
        Options o = parseOptions(c.args, {}, {"--json"});
        expectPositional(o, 1, 1, MtaStsShowCommand);
        const std::string domain = checkDomain(o.positional[0]);
        config::ServerConfig cfg = loadConfig(o);
        const std::string& file = cfg.delivery.mtaSts.cacheFile;
        std::string text;
        if (!queue::readFile(file, text)) {
            if (errno != ENOENT) throw CtlError(ExitIoError, "cannot read " + file + ": " + queue::errnoText(errno));
            text.clear();
        }
        for (const auto& e : mtasts::parseCacheFile(text)) {
            if (e.domain != domain) continue;
            const bool expired = e.expires <= static_cast<std::int64_t>(std::time(nullptr));
            std::string mx;
            for (const auto& m : e.policy.mx) mx += (mx.empty() ? "" : " ") + m;
            if (o.has("--json")) {
                auto j = jsonObject();
                j->set("domain", e.domain);
                j->set("id", e.id);
                j->set("mode", std::string(mtasts::modeName(e.policy.mode)));
                j->set("max_age", static_cast<unsigned>(e.policy.maxAge));
                Poco::JSON::Array::Ptr arr = new Poco::JSON::Array;
                for (const auto& m : e.policy.mx) arr->add(m);
                j->set("mx", arr);
                j->set("fetched", isoTime(e.fetched));
                j->set("expires", isoTime(e.expires));
                j->set("expired", expired);
                writeJson(c.out, j);
                return static_cast<int>(ExitOk);
            }
            c.out << "domain   " << e.domain << "\n"
                  << "id       " << e.id << "\n"
                  << "mode     " << mtasts::modeName(e.policy.mode) << "\n"
                  << "max_age  " << e.policy.maxAge << "\n"
                  << "mx       " << (mx.empty() ? "-" : mx) << "\n"
                  << "fetched  " << isoTime(e.fetched) << "\n"
                  << "expires  " << isoTime(e.expires) << (expired ? " (expired)" : "") << "\n";
            return static_cast<int>(ExitOk);
        }
        throw CtlError(ExitNoUser, "no cached MTA-STS policy for " + domain + " in " + file);
    });
}

}  // namespace postern::ctl
