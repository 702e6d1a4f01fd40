#include "dkim/KeyStore.h"

#include "pg/Pool.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace postern::dkim {

namespace fs = std::filesystem;

void checkKeyFile(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw KeyError("DKIM key " + path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw KeyError("DKIM key " + path + ": not a regular file");
    if (st.st_mode & S_IROTH)
        throw KeyError("DKIM key " + path + " is readable by every user; fix with: chmod o-rwx " + path);
}

KeyMap loadKeyDir(const std::string& dir) {
    KeyMap out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw KeyError("dkim.key_dir " + dir + ": not a directory");
    std::vector<fs::path> domains;
    for (const auto& d : fs::directory_iterator(dir, ec))
        if (d.is_directory()) domains.push_back(d.path());
    if (ec) throw KeyError("dkim.key_dir " + dir + ": " + ec.message());
    std::sort(domains.begin(), domains.end());
    for (const auto& d : domains) {
        const std::string domain = d.filename().string();
        std::vector<fs::path> files;
        for (const auto& f : fs::directory_iterator(d, ec))
            if (f.path().extension() == ".key") files.push_back(f.path());
        // A domain directory the server cannot read fails like a bad key, never drops the
        // domain in silence (review finding: its mail went out unsigned, reason=no_key).
        if (ec) throw KeyError("DKIM key directory " + d.string() + ": " + ec.message());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            const std::string selector = f.stem().string();
            if (!validDomain(domain)) throw KeyError("DKIM key " + f.string() + ": '" + domain + "' is not a domain in lower-case A-label form");
            if (!validSelector(selector)) throw KeyError("DKIM key " + f.string() + ": '" + selector + "' is not a selector (lower-case letters, digits, '-', '.')");
            checkKeyFile(f.string());
            std::ifstream in(f, std::ios::binary);
            std::stringstream pem;
            pem << in.rdbuf();
            if (!in) throw KeyError("DKIM key " + f.string() + ": cannot read");
            try {
                out[domain].push_back(parsePrivateKey(pem.str(), domain, selector));
            } catch (const KeyError& e) {
                throw KeyError("DKIM key " + f.string() + ": " + e.what());
            }
        }
    }
    return out;
}

KeyMap loadKeyTable(pg::Pool& pool) { return keysFromRows(pool.execute({"postern_dkim_keys", KeyTableQuery}, {})); }

KeyMap keysFromRows(const pg::QueryResult& r) {
    if (r.failed()) {
        if (r.sqlState == "42P01") throw KeyError("the dkim_keys table is missing (run 'posternctl db migrate')");
        throw KeyError("reading dkim_keys: " + r.error);
    }
    KeyMap out;
    for (const auto& row : r.rows) {
        if (row.size() < 3 || !row[0] || !row[1] || !row[2]) continue;
        try {
            out[*row[0]].push_back(parsePrivateKey(*row[2], *row[0], *row[1]));
        } catch (const KeyError& e) {
            throw KeyError("DKIM key " + *row[1] + " of " + *row[0] + " in dkim_keys: " + e.what());
        }
    }
    return out;
}

void mergeKeys(KeyMap& into, const KeyMap& more) {
    for (const auto& [domain, keys] : more) {
        auto& mine = into[domain];
        for (const auto& k : keys)
            if (std::none_of(mine.begin(), mine.end(), [&](const SigningKey& m) { return m.selector == k.selector; }))
                mine.push_back(k);
    }
}

void KeyStore::replace(KeyMap keys) {
    auto next = std::make_shared<const KeyMap>(std::move(keys));
    std::lock_guard<std::mutex> lock(mutex_);
    keys_ = std::move(next);
}

std::vector<SigningKey> KeyStore::keysFor(const std::string& domain) const {
    std::shared_ptr<const KeyMap> snap;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        snap = keys_;
    }
    auto it = snap->find(domain);
    return it == snap->end() ? std::vector<SigningKey>{} : it->second;
}

std::size_t KeyStore::keyCount() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t n = 0;
    for (const auto& [d, k] : *keys_) n += k.size();
    return n;
}

}  // namespace postern::dkim
