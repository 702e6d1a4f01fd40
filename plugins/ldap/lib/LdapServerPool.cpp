// Connections to the configured LDAP servers: per-server pools, health marks, a background
// probe and ordered fail-over with fail-back.
#include "LdapServerPool.h"

#include "SigpipeGuard.h"
#include "core/EventLine.h"
#include "core/Utf8.h"

#include <ldap.h>
#include <arpa/inet.h>

#include <Poco/Logger.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace postern::plugins::ldap {

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.auth.ldap");
    return l;
}

}  // namespace

// An ldap:// URI (any case) whose host is localhost, an address in 127/8 or [::1]: the
// password stays on the host.
bool plainLdapUri(const std::string& uri) { return core::asciiLower(uri.substr(0, 7)) == "ldap://"; }
bool loopbackUri(const std::string& uri) {
    const std::string rest = core::asciiLower(uri.substr(std::min<std::size_t>(uri.size(), 7)));
    std::string host;
    if (!rest.empty() && rest.front() == '[') {
        host = rest.substr(0, rest.find(']') == std::string::npos ? rest.size() : rest.find(']') + 1);
        return host == "[::1]";
    }
    host = rest.substr(0, rest.find_first_of(":/"));
    if (host == "localhost") return true;
    in_addr a{};
    return ::inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

LdapServerPool::LdapServerPool(const LdapConfig& config) : config_(config) {
    for (const auto& uri : config_.uris) {
        auto s = std::make_unique<Server>();
        s->uri = uri;
        servers_.push_back(std::move(s));
        // Every login's password crosses the network in a simple bind (review finding: said
        // nowhere): one line at start-up per such server.
        if (plainLdapUri(uri) && !config_.startTls && !loopbackUri(uri)) {
            logger().warning(core::EventLine("ldap.cleartext")
                                 .add("uri", uri)
                                 .text("note", "passwords are sent unencrypted: use ldaps:// or starttls = yes")
                                 .str());
        }
    }
    probeThread_ = std::thread([this] { probeLoop(); });
}

LdapServerPool::~LdapServerPool() {
    {
        std::lock_guard lock(probeMutex_);
        stopping_ = true;
    }
    probeWake_.notify_all();
    if (probeThread_.joinable()) {
        probeThread_.join();
    }
    SigpipeGuard guard;  // closing connections writes an unbind request
    servers_.clear();
}

bool LdapServerPool::isUp(std::size_t index) const {
    return index < servers_.size() && servers_[index]->up.load();
}

LdapServerPool::Lease LdapServerPool::acquire(Server& server, bool fresh, LdapResult& failure) {
    std::unique_lock lock(server.mutex);
    const auto deadline = std::chrono::steady_clock::now() + config_.searchTimeout;
    for (;;) {
        if (!server.up.load()) {
            // Marked down while we waited (the requests holding its connections timed out):
            // do not queue behind a dead or frozen server, fail over at once.
            failure = {LDAP_SERVER_DOWN, server.uri + " was marked down"};
            return {};
        }
        if (!fresh && !server.idle.empty()) {
            Lease lease{std::move(server.idle.back()), true};
            server.idle.pop_back();
            return lease;
        }
        if (server.open < config_.poolSize) {
            break;
        }
        if (fresh && !server.idle.empty()) {
            server.idle.pop_back();  // make room for the fresh connection we were asked for
            --server.open;
            break;
        }
        if (server.freed.wait_until(lock, deadline) == std::cv_status::timeout && server.open >= config_.poolSize &&
            server.idle.empty()) {
            // Overload, not an outage: the caller answers TempFail, the server stays up.
            failure = {LDAP_LOCAL_ERROR, "all " + std::to_string(config_.poolSize) + " connections to " +
                                             server.uri + " are busy (pool_size)"};
            return {};
        }
    }
    ++server.open;
    lock.unlock();
    Lease lease{LdapConnection::open(server.uri, config_, failure), false};
    if (!lease.connection) {
        lock.lock();
        --server.open;
        server.freed.notify_one();
    }
    return lease;
}

void LdapServerPool::release(Server& server, LdapConnectionPtr connection) {
    LdapConnectionPtr discard;
    {
        std::lock_guard lock(server.mutex);
        if (connection && server.up.load()) {
            server.idle.push_back(std::move(connection));
        } else {
            discard = std::move(connection);  // closed outside the lock
            --server.open;
        }
    }
    server.freed.notify_one();
}

void LdapServerPool::markDown(Server& server, const LdapResult& why) {
    std::vector<LdapConnectionPtr> idle;
    {
        std::lock_guard lock(server.mutex);
        // Idle connections to a failed server are most likely dead too.
        idle.swap(server.idle);
        server.open -= static_cast<int>(idle.size());
    }
    server.freed.notify_all();
    if (server.up.exchange(false)) {
        // The last server up gone: probe at once, not after up to probe_interval, so one
        // operation that missed its deadline (a slow search of a live server) does not fail
        // every login for seconds (review finding). With another server up, requests fail
        // over and the usual interval keeps a slow server from being taken back at once.
        const bool noneUp = std::none_of(servers_.begin(), servers_.end(), [](const auto& o) { return o->up.load(); });
        if (noneUp) {
            {
                std::lock_guard lock(probeMutex_);
                probeNow_ = true;
            }
            probeWake_.notify_all();
        }
        logger().warning(core::EventLine("ldap.server_down")
                             .add("uri", server.uri)
                             .text("error", why.describe())
                             .add("probe_interval", config_.probeInterval.count(), "ms")
                             .str());
    }
}

void LdapServerPool::markUp(Server& server) {
    if (!server.up.exchange(true)) {
        logger().notice(core::EventLine("ldap.server_up").add("uri", server.uri).str());
    }
}

LdapResult LdapServerPool::run(const Operation& op, std::string& serverUri) {
    SigpipeGuard guard;
    LdapResult last{LDAP_SERVER_DOWN, "no LDAP server is up (all marked down; probed every " +
                                          std::to_string(config_.probeInterval.count()) + "ms)"};
    int serversTried = 0;
    for (auto& s : servers_) {
        // One retry on the next healthy server, not a walk over every server: a request
        // should fail fast while an outage is being detected.
        if (serversTried == 2) {
            break;
        }
        if (!s->up.load()) {
            continue;
        }
        ++serversTried;
        serverUri = s->uri;
        bool fresh = false;
        for (;;) {
            LdapResult failure;
            Lease lease = acquire(*s, fresh, failure);
            if (!lease.connection) {
                last = failure;
                if (!failure.isServerFailure()) {
                    return failure;  // pool exhausted: TempFail without a fail-over
                }
                markDown(*s, failure);
                break;
            }
            LdapResult r;
            try {
                r = op(*lease.connection);
            } catch (...) {
                // bad_alloc copying a large result, say: the connection is in an unknown
                // state, and its slot must not stay counted (after pool_size of these every
                // request would wait for a slot that never comes).
                release(*s, nullptr);
                throw;
            }
            if (r.isServerFailure()) {
                if (lease.reused && !fresh && r.code == LDAP_SERVER_DOWN) {
                    // A pooled connection the server closed (restart, idle timeout): try a
                    // new one before calling the server down.
                    release(*s, nullptr);
                    fresh = true;
                    continue;
                }
                // Down first, then free the slot: a request woken by the free slot must see
                // the mark and fail over, not open a new connection to the same dead server.
                markDown(*s, r);
                release(*s, nullptr);  // missed its deadline or lost: closed, never pooled
                last = r;
                break;
            }
            if (r.code == LDAP_TIMELIMIT_EXCEEDED || r.code == LDAP_ADMINLIMIT_EXCEEDED) {
                // A live server too slow for this request: the next one may answer it in
                // time; this one stays up and keeps its connection.
                release(*s, std::move(lease.connection));
                last = r;
                break;
            }
            // Client-side errors leave the connection in an unknown state: do not reuse it.
            release(*s, r.code < 0 ? nullptr : std::move(lease.connection));
            return r;
        }
    }
    return last;
}

bool LdapServerPool::probe(Server& server) {
    LdapResult r;
    LdapConnectionPtr conn = LdapConnection::open(server.uri, config_, r);
    if (conn && !config_.bindDn.empty()) {
        r = conn->bind(config_.bindDn, config_.bindPassword, LdapConnection::Identity::Service);
    } else if (conn) {
        std::vector<LdapEntry> rootDse;
        r = conn->search("", LDAP_SCOPE_BASE, "(objectClass=*)", {}, 1, rootDse);
        if (r.code == LDAP_NO_SUCH_OBJECT || r.code == LDAP_INSUFFICIENT_ACCESS) {
            r = {};  // it answered: that is all a probe needs
        }
    }
    if (!conn || !r.ok()) {
        logger().debug(core::EventLine("ldap.probe_failed").add("uri", server.uri).text("error", r.describe()).str());
        return false;
    }
    {
        std::lock_guard lock(server.mutex);
        if (server.open < config_.poolSize) {
            ++server.open;
            server.idle.push_back(std::move(conn));
        }
    }
    server.freed.notify_one();
    markUp(server);
    return true;
}

void LdapServerPool::probeLoop() {
    std::unique_lock lock(probeMutex_);
    while (!stopping_) {
        probeWake_.wait_for(lock, config_.probeInterval, [this] { return stopping_ || probeNow_; });
        probeNow_ = false;
        if (stopping_) {
            break;
        }
        lock.unlock();
        SigpipeGuard guard;
        for (auto& s : servers_) {
            if (!s->up.load()) {
                try {
                    probe(*s);
                } catch (...) {
                    // bad_alloc at most; the next round tries again.
                }
            }
        }
        lock.lock();
    }
}

}  // namespace postern::plugins::ldap
