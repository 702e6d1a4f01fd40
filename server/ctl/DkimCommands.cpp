// posternctl dkim ...: DKIM signing keys in dkim.key_dir or the shared PostgreSQL.
#include "DkimCommands.h"

#include "CtlSupport.h"
#include "PgAdmin.h"
#include "core/Idna.h"
#include "dkim/KeyStore.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <ostream>

namespace postern::ctl {

namespace {

constexpr const char* DkimDbNeedsCluster =
    "keys in the database (--db, dkim.keys_in_database) are the cluster's; a single node signs with "
    "the files in dkim.key_dir";

namespace fs = std::filesystem;

std::string keyDomain(const std::string& text) {
    auto ascii = core::domainToAscii(text);
    if (!ascii || !dkim::validDomain(*ascii))
        throw CtlError(ExitDataError, "'" + text + "' is not a domain name (such as example.com)");
    return *ascii;
}

dkim::Algorithm algorithmOf(const std::string& text) {
    if (text.empty() || text == "rsa") return dkim::Algorithm::Rsa;
    if (text == "ed25519") return dkim::Algorithm::Ed25519;
    throw CtlError(ExitDataError, "--algorithm must be rsa or ed25519, not '" + text + "'");
}

// The default selector names the algorithm and the month: "rsa-202612", "ed25519-202612"
// (a new key next month gets a new DNS name; both can be published during a rollover).
std::string defaultSelector(dkim::Algorithm a) {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char ym[16];
    std::strftime(ym, sizeof ym, "%Y%m", &tm);
    return std::string(dkim::algorithmName(a)) + "-" + ym;
}

// The group posternd runs as (server.group, else server.user's primary group); -1 if none.
gid_t serverGroup(const config::ServerConfig& cfg) {
    if (!cfg.group.empty()) {
        if (struct group* g = ::getgrnam(cfg.group.c_str())) return g->gr_gid;
        throw CtlError(ExitConfig, "server.group: no such group '" + cfg.group + "'");
    }
    if (!cfg.user.empty()) {
        if (struct passwd* p = ::getpwnam(cfg.user.c_str())) return p->pw_gid;
        throw CtlError(ExitConfig, "server.user: no such user '" + cfg.user + "'");
    }
    return static_cast<gid_t>(-1);
}

void writeKeyFile(const config::ServerConfig& cfg, const std::string& domain, const std::string& selector,
                  const std::string& pem, std::ostream& out) {
    const fs::path dir = fs::path(cfg.dkim.keyDir) / domain;
    const fs::path file = dir / (selector + ".key");
    const gid_t gid = ::geteuid() == 0 ? serverGroup(cfg) : static_cast<gid_t>(-1);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw CtlError(ExitIoError, "cannot create " + dir.string() + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
    if (gid != static_cast<gid_t>(-1)) {
        if (::chown(cfg.dkim.keyDir.c_str(), 0, gid) != 0 || ::chown(dir.c_str(), 0, gid) != 0)
            throw CtlError(ExitIoError, "cannot chown " + dir.string() + ": " + std::strerror(errno));
    }
    if (fs::exists(file, ec))
        throw CtlError(ExitCantCreate, file.string() + " exists (choose another --selector; keys are never overwritten)");
    // Written whole to a temp name (not *.key: posternd never reads it), then linked to its
    // name, which refuses an existing key; a crash or a SIGHUP midway never meets a partial
    // key under the name posternd loads (review finding: an empty key file failed the next
    // start).
    std::string tmp = (dir / ("." + selector + ".key.XXXXXX")).string();
    int fd = ::mkstemp(tmp.data());
    if (fd < 0) throw CtlError(ExitIoError, "cannot create a file in " + dir.string() + ": " + std::strerror(errno));
    bool ok = ::fchmod(fd, 0600) == 0;
    if (ok && gid != static_cast<gid_t>(-1)) ok = ::fchown(fd, 0, gid) == 0 && ::fchmod(fd, 0640) == 0;
    std::size_t done = 0;
    while (ok && done < pem.size()) {
        ssize_t n = ::write(fd, pem.data() + done, pem.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) ok = false;
        else done += static_cast<std::size_t>(n);
    }
    ok = ok && ::fsync(fd) == 0;
    int err = errno;
    ::close(fd);
    if (ok && ::link(tmp.c_str(), file.c_str()) != 0) {
        ok = false;
        err = errno;
    }
    ::unlink(tmp.c_str());
    if (!ok) {
        if (err == EEXIST)
            throw CtlError(ExitCantCreate, file.string() + " exists (choose another --selector; keys are never overwritten)");
        throw CtlError(ExitIoError, "cannot write " + file.string() + ": " + std::strerror(err));
    }
    if (int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
    out << "wrote " << file.string() << "\n";
}

pg::QueryResult run(pg::Connection& c, const std::string& sql, const pg::Params& params, const std::string& what) {
    pg::QueryResult r = c.execParams(sql, params);
    if (!r.failed()) return r;
    if (r.sqlState == "42P01")
        throw CtlError(ExitConfig, what + ": the dkim_keys table is missing (run 'posternctl db migrate' first)");
    if (c.isBroken(r) || r.sqlState == "57014") throw CtlError(ExitTempFail, what + ": " + r.error);
    if (r.sqlState.rfind("22", 0) == 0 || r.sqlState.rfind("23", 0) == 0) throw CtlError(ExitDataError, what + ": " + r.error);
    throw CtlError(ExitSoftware, what + ": " + r.error + " (SQLSTATE " + r.sqlState + ")");
}

struct Listed {
    dkim::SigningKey key;
    std::string source;
};

// Every key of the configured sources: the directory when dkim.key_dir is set, the database
// with --db or dkim.keys_in_database.
std::vector<Listed> allKeys(const config::ServerConfig& cfg, const Options& o) {
    std::vector<Listed> out;
    const bool db = o.has("--db") || cfg.dkim.keysInDatabase;
    if (cfg.dkim.keyDir.empty() && !db)
        throw CtlError(ExitConfig, "no DKIM keys configured: set dkim.key_dir, or use --db (dkim.keys_in_database)");
    if (!cfg.dkim.keyDir.empty()) {
        try {
            for (const auto& [domain, keys] : dkim::loadKeyDir(cfg.dkim.keyDir))
                for (const auto& k : keys) out.push_back({k, "file"});
        } catch (const dkim::KeyError& e) {
            throw CtlError(ExitConfig, e.what());
        }
    }
    if (db) {
        pg::ConnectionPtr c = openAdminConnection(clusterDatabase(cfg, DkimDbNeedsCluster));
        pg::QueryResult r = run(*c, dkim::KeyTableQuery, {}, "list keys");
        try {
            for (const auto& [domain, keys] : dkim::keysFromRows(r))
                for (const auto& k : keys) out.push_back({k, "db"});
        } catch (const dkim::KeyError& e) {
            throw CtlError(ExitConfig, e.what());
        }
    }
    return out;
}

}  // namespace

int runDkimKeygen(CommandContext& c) {
    return guarded(c, "dkim keygen", [&] {
        Options o = parseOptions(c.args, {"--selector", "--algorithm"}, {"--db"});
        expectPositional(o, 1, 1, DkimKeygenCommand);
        const std::string domain = keyDomain(o.positional[0]);
        const dkim::Algorithm alg = algorithmOf(o.value("--algorithm"));
        std::string selector = o.value("--selector");
        for (char& ch : selector)
            if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
        if (selector.empty()) selector = defaultSelector(alg);
        if (!dkim::validSelector(selector))
            throw CtlError(ExitDataError, "--selector '" + selector + "': letters, digits and '-' in dot-separated labels");
        config::ServerConfig cfg = loadConfig(o);
        if (!o.has("--db") && cfg.dkim.keyDir.empty())
            throw CtlError(ExitConfig, "dkim.key_dir is not set (set it, or store the key in the database with --db)");
        dkim::PKeyPtr pkey = dkim::generateKey(alg);
        const std::string pem = dkim::privateKeyPem(pkey);
        dkim::SigningKey key = dkim::parsePrivateKey(pem, domain, selector);
        if (o.has("--db")) {
            pg::ConnectionPtr conn = openAdminConnection(clusterDatabase(cfg, DkimDbNeedsCluster));
            pg::QueryResult r = run(*conn,
                                    "INSERT INTO dkim_keys (domain, selector, algorithm, private_key) VALUES ($1, $2, $3, $4)"
                                    " ON CONFLICT (domain, selector) DO NOTHING",
                                    {domain, selector, std::string(dkim::algorithmName(alg)), pem}, "store key");
            if (r.affectedRows == 0)
                throw CtlError(ExitCantCreate, "a key " + selector + " for " + domain + " exists in dkim_keys (choose another --selector)");
            c.out << "stored " << selector << " for " << domain << " in dkim_keys\n";
        } else {
            writeKeyFile(cfg, domain, selector, pem, c.out);
        }
        c.out << "algorithm " << dkim::signatureAlgorithm(alg) << ", selector " << selector
              << "; publish this DNS record, then reload posternd (SIGHUP):\n"
              << dkim::txtRecordLine(key) << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runDkimList(CommandContext& c) {
    return guarded(c, "dkim list", [&] {
        Options o = parseOptions(c.args, {}, {"--db", "--json"});
        expectPositional(o, 0, 0, DkimListCommand);
        std::vector<Listed> keys = allKeys(loadConfig(o), o);
        if (o.has("--json")) {
            Poco::JSON::Array::Ptr arr = new Poco::JSON::Array;
            for (const auto& l : keys) {
                auto j = jsonObject();
                j->set("domain", l.key.domain);
                j->set("selector", l.key.selector);
                j->set("algorithm", std::string(dkim::algorithmName(l.key.algorithm)));
                j->set("source", l.source);
                arr->add(j);
            }
            writeJson(c.out, arr);
            return static_cast<int>(ExitOk);
        }
        for (const auto& l : keys)
            c.out << l.key.domain << "\t" << l.key.selector << "\t" << dkim::algorithmName(l.key.algorithm) << "\t"
                  << l.source << "\n";
        return static_cast<int>(ExitOk);
    });
}

int runDkimShow(CommandContext& c) {
    return guarded(c, "dkim show", [&] {
        Options o = parseOptions(c.args, {}, {"--db", "--json"});
        expectPositional(o, 1, 1, DkimShowCommand);
        const std::string domain = keyDomain(o.positional[0]);
        std::vector<Listed> mine;
        for (auto& l : allKeys(loadConfig(o), o))
            if (l.key.domain == domain) mine.push_back(std::move(l));
        if (mine.empty()) throw CtlError(ExitNoUser, "no DKIM key for " + domain);
        if (o.has("--json")) {
            Poco::JSON::Array::Ptr arr = new Poco::JSON::Array;
            for (const auto& l : mine) {
                auto j = jsonObject();
                j->set("domain", l.key.domain);
                j->set("selector", l.key.selector);
                j->set("algorithm", std::string(dkim::algorithmName(l.key.algorithm)));
                j->set("source", l.source);
                j->set("dns_name", l.key.selector + "._domainkey." + l.key.domain + ".");
                j->set("txt", dkim::txtRecordText(l.key));
                arr->add(j);
            }
            writeJson(c.out, arr);
            return static_cast<int>(ExitOk);
        }
        for (const auto& l : mine)
            c.out << "selector " << l.key.selector << " (" << dkim::signatureAlgorithm(l.key.algorithm) << ", " << l.source
                  << ")\n"
                  << dkim::txtRecordLine(l.key) << "\n";
        return static_cast<int>(ExitOk);
    });
}

}  // namespace postern::ctl
