// The DKIM keys the daemon signs with, by From domain: read from a key directory
// (`dkim.key_dir`: <domain>/<selector>.key, permission-checked like the TLS key) and/or from
// the shared PostgreSQL (table dkim_keys, so every cluster node signs with the same keys),
// at start-up and on SIGHUP. Lookups are lock-free for readers of one snapshot.
#pragma once

#include "dkim/Key.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace postern::pg {
class Pool;
struct QueryResult;
}

namespace postern::dkim {

using KeyMap = std::map<std::string, std::vector<SigningKey>>;  // domain -> its keys

// Every <dir>/<domain>/<selector>.key. Throws KeyError naming the file: a key that does not
// parse, a file readable by every user ("chmod o-rwx"), a bad domain or selector name.
// Other files are ignored. A missing directory is an error.
KeyMap loadKeyDir(const std::string& dir);
// The rows of "SELECT domain, selector, private_key FROM dkim_keys" (KeyTableQuery).
// Throws KeyError (the query failed, the table is missing, a bad key).
inline constexpr const char* KeyTableQuery = "SELECT domain, selector, private_key FROM dkim_keys ORDER BY domain, selector";
KeyMap keysFromRows(const pg::QueryResult& result);
// KeyTableQuery through the pool.
KeyMap loadKeyTable(pg::Pool& pool);
// Adds `more` into `into` (a (domain, selector) present in both: the directory wins).
void mergeKeys(KeyMap& into, const KeyMap& more);

// Refuses a key file anyone may read (0640 root:postern passes, as for tls.key_file).
void checkKeyFile(const std::string& path);

class KeyStore {
public:
    void replace(KeyMap keys);
    // The keys of `domain` (A-label, lower case); empty if none.
    std::vector<SigningKey> keysFor(const std::string& domain) const;
    std::size_t keyCount() const;
    bool empty() const { return keyCount() == 0; }

private:
    mutable std::mutex mutex_;
    std::shared_ptr<const KeyMap> keys_ = std::make_shared<KeyMap>();
};

}  // namespace postern::dkim
