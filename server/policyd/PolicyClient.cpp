#include "policyd/PolicyClient.h"

#include "net/HostResolver.h"
#include "policyd/PolicyProtocol.h"

#include <Poco/Exception.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>

#include <sys/socket.h>

namespace postern::policyd {

std::optional<PolicyEndpoint> PolicyEndpoint::parse(std::string_view text, std::string& error) {
    PolicyEndpoint e;
    if (text.rfind("unix:", 0) == 0) {
        e.kind = Kind::Unix;
        e.path = std::string(text.substr(5));
        if (e.path.empty() || e.path.front() != '/') {
            error = "expected unix:/absolute/path";
            return std::nullopt;
        }
        return e;
    }
    if (text.rfind("inet:", 0) != 0) {
        error = "expected inet:host:port or unix:/path";
        return std::nullopt;
    }
    std::string_view rest = text.substr(5);
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= rest.size()) {
        error = "expected inet:host:port";
        return std::nullopt;
    }
    std::string_view host = rest.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    unsigned long port = 0;
    for (char c : rest.substr(colon + 1)) {
        if (c < '0' || c > '9' || port > 65535) {
            error = "bad port in '" + std::string(text) + "'";
            return std::nullopt;
        }
        port = port * 10 + static_cast<unsigned long>(c - '0');
    }
    if (host.empty() || port == 0 || port > 65535) {
        error = "expected inet:host:port with a port 1..65535";
        return std::nullopt;
    }
    e.host = std::string(host);
    e.port = static_cast<std::uint16_t>(port);
    return e;
}

std::string PolicyEndpoint::describe() const {
    if (kind == Kind::Unix) return "unix:" + path;
    return "inet:" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

PolicyClient::PolicyClient(PolicyClientSettings settings) : settings_(std::move(settings)) {
    if (settings_.tryLimit < 1) settings_.tryLimit = 1;
}

PolicyClient::~PolicyClient() { dropIdle(); }

std::size_t PolicyClient::idleConnections() const {
    std::lock_guard lock(mutex_);
    return idle_.size();
}

void PolicyClient::dropIdle() {
    std::vector<std::unique_ptr<Connection>> old;
    {
        std::lock_guard lock(mutex_);
        old.swap(idle_);
    }
    for (auto& c : old) {
        try {
            c->socket.close();
        } catch (...) {
        }
    }
}

std::unique_ptr<PolicyClient::Connection> PolicyClient::takeIdle(Clock::time_point now) {
    std::vector<std::unique_ptr<Connection>> expired;
    std::unique_ptr<Connection> found;
    {
        std::lock_guard lock(mutex_);
        while (!idle_.empty()) {
            std::unique_ptr<Connection> c = std::move(idle_.back());
            idle_.pop_back();
            if (now - c->lastUsed >= settings_.maxIdle || now - c->created >= settings_.maxTtl) {
                expired.push_back(std::move(c));
                continue;
            }
            found = std::move(c);
            break;
        }
    }
    for (auto& c : expired) {
        try {
            c->socket.close();
        } catch (...) {
        }
    }
    return found;
}

void PolicyClient::giveBack(std::unique_ptr<Connection> c) {
    const auto now = Clock::now();
    bool keep = (settings_.requestLimit == 0 || c->requests < settings_.requestLimit) &&
                now - c->created < settings_.maxTtl && settings_.poolSize > 0;
    std::vector<std::unique_ptr<Connection>> closing;
    {
        std::lock_guard lock(mutex_);
        // Idle ones past max_idle go now (they would be refused at the next take anyway).
        for (auto it = idle_.begin(); it != idle_.end();) {
            if (now - (*it)->lastUsed >= settings_.maxIdle || now - (*it)->created >= settings_.maxTtl) {
                closing.push_back(std::move(*it));
                it = idle_.erase(it);
            } else {
                ++it;
            }
        }
        if (keep && idle_.size() < settings_.poolSize) {
            c->lastUsed = now;
            idle_.push_back(std::move(c));
        }
    }
    if (c) closing.push_back(std::move(c));
    for (auto& x : closing) {
        try {
            x->socket.close();
        } catch (...) {
        }
    }
}

namespace {

// Microseconds left until `deadline` (at least 1 ms when positive, so Poco never gets a
// zero timeout, which would mean "block forever").
bool remaining(std::chrono::steady_clock::time_point deadline, Poco::Timespan& out) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (left < std::chrono::milliseconds(1)) left = std::chrono::milliseconds(1);
    out = Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(left.count()));
    return true;
}

}  // namespace

std::unique_ptr<PolicyClient::Connection> PolicyClient::connect(Clock::time_point deadline, std::string& error,
                                                                bool& timedOut) {
    Poco::Timespan left;
    if (!remaining(deadline, left)) {
        timedOut = true;
        error = "timeout";
        return nullptr;
    }
    auto c = std::make_unique<Connection>();
    try {
        const PolicyEndpoint& e = settings_.endpoint;
        Poco::Net::SocketAddress addr;
        if (e.kind == PolicyEndpoint::Kind::Unix) {
            addr = Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, e.path);
        } else {
            // The host name's lookup within the same deadline (getaddrinfo has none).
            auto found = net::HostResolver::forHost(e.host, e.port).resolve(deadline, error);
            if (!found) {
                timedOut = Clock::now() >= deadline;
                error = "connect: " + error;
                return nullptr;
            }
            addr = *found;
            if (!remaining(deadline, left)) {
                timedOut = true;
                error = "timeout";
                return nullptr;
            }
        }
        c->socket.connect(addr, left);
        if (e.kind == PolicyEndpoint::Kind::Inet) c->socket.setNoDelay(true);
    } catch (const Poco::TimeoutException&) {
        timedOut = true;
        error = "timeout";
        return nullptr;
    } catch (const Poco::Exception& ex) {
        error = "connect: " + ex.displayText();
        return nullptr;
    } catch (const std::exception& ex) {
        error = std::string("connect: ") + ex.what();
        return nullptr;
    }
    c->created = c->lastUsed = Clock::now();
    ++opened_;
    return c;
}

PolicyClient::Attempt PolicyClient::exchange(Connection& c, const std::string& request, Clock::time_point deadline,
                                             std::string& response, std::string& error) {
    try {
        Poco::Timespan left;
        std::size_t sent = 0;
        while (sent < request.size()) {
            if (!remaining(deadline, left)) return error = "timeout", Attempt::Timeout;
            c.socket.setSendTimeout(left);
            // MSG_NOSIGNAL: a server that went away must not kill the daemon with SIGPIPE.
            int n = c.socket.sendBytes(request.data() + sent, static_cast<int>(request.size() - sent), MSG_NOSIGNAL);
            if (n <= 0) return error = "closed", Attempt::ConnectionFailed;
            sent += static_cast<std::size_t>(n);
        }
        std::string buf;
        char chunk[4096];
        for (;;) {
            if (!remaining(deadline, left)) return error = "timeout", Attempt::Timeout;
            c.socket.setReceiveTimeout(left);
            int n = c.socket.receiveBytes(chunk, sizeof chunk);
            if (n <= 0) return error = buf.empty() ? "closed" : "closed mid-response", Attempt::ConnectionFailed;
            buf.append(chunk, static_cast<std::size_t>(n));
            if (std::size_t len = responseLength(buf)) {
                if (len > MaxResponseBytes) return error = "oversized", Attempt::ProtocolError;
                response = buf.substr(0, len);
                // Bytes after the response: the peer is out of step; the connection is not
                // reused (the caller closes it on a protocol error).
                if (len != buf.size()) return error = "trailing data", Attempt::ProtocolError;
                return Attempt::Ok;
            }
            if (buf.size() > MaxResponseBytes) return error = "oversized", Attempt::ProtocolError;
        }
    } catch (const Poco::TimeoutException&) {
        error = "timeout";
        return Attempt::Timeout;
    } catch (const Poco::Exception& ex) {
        error = ex.displayText();
        return Attempt::ConnectionFailed;
    } catch (const std::exception& ex) {
        error = ex.what();
        return Attempt::ConnectionFailed;
    }
}

QueryResult PolicyClient::query(const std::string& request) {
    QueryResult r;
    const Clock::time_point deadline = Clock::now() + settings_.timeout;
    bool staleRetryUsed = false;
    for (unsigned attempt = 0; attempt < settings_.tryLimit; ++attempt) {
        ++r.tries;
        bool reused = false;
        std::unique_ptr<Connection> c = takeIdle(Clock::now());
        if (c) {
            reused = true;
        } else {
            c = connect(deadline, r.error, r.timedOut);
            if (!c) {
                if (r.timedOut) return r;
                continue;  // refused / unreachable: the next try connects again
            }
        }
        std::string response;
        Attempt a = exchange(*c, request, deadline, response, r.error);
        ++c->requests;
        if (a == Attempt::Ok) {
            giveBack(std::move(c));
            r.ok = true;
            r.error.clear();
            r.response = std::move(response);
            return r;
        }
        try {
            c->socket.close();
        } catch (...) {
        }
        if (a == Attempt::Timeout) {
            r.timedOut = true;
            return r;
        }
        if (a == Attempt::ProtocolError) return r;
        // The connection failed. A pooled one the server closed meanwhile (idle timeout,
        // restart) is not the server's fault: the others in the pool are likely stale too,
        // so they go, and this once the try is not counted.
        if (reused) {
            dropIdle();
            if (!staleRetryUsed) {
                staleRetryUsed = true;
                --attempt;
            }
        }
    }
    return r;
}

}  // namespace postern::policyd
