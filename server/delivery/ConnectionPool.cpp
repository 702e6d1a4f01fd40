#include "delivery/ConnectionPool.h"

#include <vector>

namespace postern::delivery {

std::unique_ptr<SmtpClient> ConnectionPool::take(const std::string& key, Clock::time_point& opened) {
    std::vector<std::unique_ptr<SmtpClient>> expired;
    std::unique_ptr<SmtpClient> found;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return nullptr;
        auto now = Clock::now();
        auto [it, last] = idle_.equal_range(key);
        auto newest = idle_.end();  // the one least likely to have been closed by the server meanwhile
        while (it != last) {
            if (expiry(it->second) <= now || !it->second.client->usable()) {
                expired.push_back(std::move(it->second.client));
                it = idle_.erase(it);
            } else {
                newest = it++;
            }
        }
        if (newest != idle_.end()) {
            found = std::move(newest->second.client);
            opened = newest->second.opened;
            idle_.erase(newest);
        }
    }
    for (auto& c : expired) c->quit();
    return found;
}

bool ConnectionPool::park(const std::string& key, std::unique_ptr<SmtpClient> client, Clock::time_point opened) {
    if (!client) return false;
    auto now = Clock::now();
    if (enabled() && client->usable() && now < opened + reuseLimit_) {
        std::lock_guard lock(mutex_);
        if (!closed_) {
            idle_.emplace(key, Idle{std::move(client), opened, now});
            if (armed_) return false;
            armed_ = true;
            return true;
        }
    }
    client->quit();
    return false;
}

std::optional<ConnectionPool::Clock::time_point> ConnectionPool::sweep() {
    std::vector<std::unique_ptr<SmtpClient>> expired;
    std::optional<Clock::time_point> next;
    {
        std::lock_guard lock(mutex_);
        auto now = Clock::now();
        for (auto it = idle_.begin(); it != idle_.end();) {
            Clock::time_point until = expiry(it->second);
            if (until <= now) {
                expired.push_back(std::move(it->second.client));
                it = idle_.erase(it);
                continue;
            }
            if (!next || until < *next) next = until;
            ++it;
        }
        armed_ = next.has_value();
    }
    for (auto& c : expired) c->quit();
    return next;
}

void ConnectionPool::abortAll() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (auto& [key, idle] : idle_) idle.client->abort();
}

void ConnectionPool::closeAll() {
    std::multimap<std::string, Idle> all;
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
        all.swap(idle_);
        armed_ = false;
    }
    for (auto& [key, idle] : all) idle.client->quit();
}

std::size_t ConnectionPool::idleCount() const {
    std::lock_guard lock(mutex_);
    return idle_.size();
}

}  // namespace postern::delivery
