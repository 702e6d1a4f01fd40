#include "mtasts/PolicyCache.h"

#include "queue/FileOps.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
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

PolicyCache::PolicyCache(std::string file, Clock now) : file_(std::move(file)), now_(std::move(now)) {
    if (!now_) {
        now_ = [] {
            return static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
        };
    }
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
    const std::int64_t now = now_();
    {
        std::lock_guard lock(mutex_);
        auto miss = sharedMisses_.find(domain);
        if (miss != sharedMisses_.end() && now < miss->second + SharedMissTtl) return std::nullopt;
    }
    bool failed = false;
    auto p = shared_->load(domain, &failed);
    std::lock_guard lock(mutex_);
    if (p) {
        // Never over a newer policy another thread fetched meanwhile.
        auto [it, fresh] = entries_.try_emplace(domain, *p);
        if (!fresh && it->second.fetched < p->fetched) it->second = *p;
        sharedMisses_.erase(domain);
        return it->second;
    }
    if (!failed) {  // a database that cannot answer is asked again next time
        if (sharedMisses_.size() >= 100000) sharedMisses_.clear();  // bounded; at worst asked again
        sharedMisses_[domain] = now;
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
    std::vector<CachedPolicy> snapshot;
    std::uint64_t version = 0;
    {
        std::lock_guard lock(mutex_);
        entries_[entry.domain] = entry;
        sharedMisses_.erase(entry.domain);
        // Expired policies are of no use (policyFor treats them as never fetched): they
        // leave memory and the file here, so neither grows with every domain ever seen.
        const std::int64_t now = now_();
        std::erase_if(entries_, [now](const auto& kv) { return kv.second.expires <= now; });
        if (file_.empty()) return true;
        for (const auto& [d, e] : entries_) snapshot.push_back(e);
        version = ++version_;
    }
    return write(std::move(snapshot), version, error);
}

bool PolicyCache::write(std::vector<CachedPolicy> list, std::uint64_t version, std::string* error) {
    std::lock_guard lock(writeMutex_);
    if (version <= written_) return true;  // a newer snapshot is in the file already
    const std::string tmp = file_ + ".tmp";
    ::unlink(tmp.c_str());
    if (!queue::writeFileSynced(tmp, formatCacheFile(list)) || ::rename(tmp.c_str(), file_.c_str()) != 0 ||
        !queue::fsyncDirectory(dirOf(file_))) {
        if (error) *error = file_ + ": " + queue::errnoText(errno);
        ::unlink(tmp.c_str());
        return false;
    }
    written_ = version;
    return true;
}

}  // namespace postern::mtasts
