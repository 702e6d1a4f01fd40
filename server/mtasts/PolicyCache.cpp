#include "mtasts/PolicyCache.h"

#include "queue/FileOps.h"

#include <cerrno>
#include <cstdio>
#include <sstream>
#include <unistd.h>

namespace postern::mtasts {

namespace {
constexpr const char* Header = "# postern mta-sts cache 1";

std::string dirOf(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}
}  // namespace

std::string formatCacheFile(const std::vector<CachedPolicy>& entries) {
    std::string out = std::string(Header) + "\n";
    for (const auto& e : entries)
        out += e.domain + " " + e.id + " " + std::to_string(e.fetched) + " " + std::to_string(e.expires) + " " +
               policyLine(e.policy) + "\n";
    return out;
}

std::vector<CachedPolicy> parseCacheFile(const std::string& text) {
    std::vector<CachedPolicy> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream f(line);
        CachedPolicy e;
        std::string mode, age, mx;
        if (!(f >> e.domain >> e.id >> e.fetched >> e.expires >> mode >> age >> mx)) continue;
        auto p = parsePolicyLine(mode + " " + age + " " + mx);
        if (!p || e.domain.empty()) continue;
        e.policy = *p;
        out.push_back(std::move(e));
    }
    return out;
}

PolicyCache::PolicyCache(std::string file) : file_(std::move(file)) {
    if (file_.empty()) return;
    std::string text;
    if (!queue::readFile(file_, text)) return;
    for (auto& e : parseCacheFile(text)) entries_[e.domain] = std::move(e);
}

std::optional<CachedPolicy> PolicyCache::get(const std::string& domain) {
    {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(domain);
        if (it != entries_.end()) return it->second;
    }
    if (!shared_) return std::nullopt;
    auto p = shared_->load(domain);
    if (p) {
        std::lock_guard lock(mutex_);
        entries_[domain] = *p;
    }
    return p;
}

std::vector<CachedPolicy> PolicyCache::all() {
    std::lock_guard lock(mutex_);
    std::vector<CachedPolicy> out;
    for (const auto& [d, e] : entries_) out.push_back(e);
    return out;
}

std::optional<CachedPolicy> PolicyCache::fromShared(const std::string& domain) {
    return shared_ ? shared_->load(domain) : std::nullopt;
}

bool PolicyCache::put(const CachedPolicy& entry, std::string* error, bool toShared) {
    if (shared_ && toShared) shared_->save(entry);
    std::lock_guard lock(mutex_);
    entries_[entry.domain] = entry;
    return writeLocked(error);
}

bool PolicyCache::writeLocked(std::string* error) {
    if (file_.empty()) return true;
    std::vector<CachedPolicy> list;
    for (const auto& [d, e] : entries_) list.push_back(e);
    const std::string tmp = file_ + ".tmp";
    ::unlink(tmp.c_str());
    if (!queue::writeFileSynced(tmp, formatCacheFile(list)) || ::rename(tmp.c_str(), file_.c_str()) != 0 ||
        !queue::fsyncDirectory(dirOf(file_))) {
        if (error) *error = file_ + ": " + queue::errnoText(errno);
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

}  // namespace postern::mtasts
