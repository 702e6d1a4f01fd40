#include "net/HostResolver.h"

#include <Poco/Exception.h>
#include <Poco/Net/IPAddress.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <exception>
#include <thread>
#include <utility>

namespace postern::net {

struct HostResolver::State {
    std::mutex mutex;
    std::condition_variable done;
    bool running = false;
    std::uint64_t finished = 0;  // lookups ended so far
    std::optional<Poco::Net::SocketAddress> address;  // of the last lookup
    std::string error;                                // of the last lookup, when it failed
};

HostResolver& HostResolver::forHost(const std::string& host, std::uint16_t port) {
    static std::mutex mutex;
    static std::map<std::pair<std::string, std::uint16_t>, std::unique_ptr<HostResolver>> all;
    std::lock_guard lock(mutex);
    auto& r = all[{host, port}];
    if (!r) r = std::make_unique<HostResolver>(host, port);
    return *r;
}

HostResolver::HostResolver(std::string host, std::uint16_t port)
    : host_(std::move(host)), port_(port), state_(std::make_shared<State>()) {
    Poco::Net::IPAddress ip;
    if (Poco::Net::IPAddress::tryParse(host_, ip)) literal_ = Poco::Net::SocketAddress(ip, port_);
}

std::optional<Poco::Net::SocketAddress> HostResolver::resolve(Clock::time_point deadline, std::string& error) {
    if (literal_) return literal_;
    std::unique_lock lock(state_->mutex);
    // Join the lookup in progress, or start one: either way wait for the end of the next
    // lookup to finish.
    const std::uint64_t want = state_->finished + 1;
    if (!state_->running) {
        state_->running = true;
        try {
            std::thread([state = state_, host = host_, port = port_] {
                std::optional<Poco::Net::SocketAddress> address;
                std::string error;
                try {
                    address = Poco::Net::SocketAddress(host, port);  // getaddrinfo: may take long
                } catch (const Poco::Exception& e) {
                    error = e.displayText();
                } catch (const std::exception& e) {
                    error = e.what();
                }
                {
                    std::lock_guard l(state->mutex);
                    state->address = std::move(address);
                    state->error = std::move(error);
                    state->running = false;
                    ++state->finished;
                }
                state->done.notify_all();
            }).detach();
        } catch (const std::exception& e) {
            // No thread (resource limits, memory): no lookup runs, and none may look as if it did.
            state_->running = false;
            error = "lookup of " + host_ + ": cannot start a thread: " + e.what();
            return std::nullopt;
        }
    }
    if (!state_->done.wait_until(lock, deadline, [&] { return state_->finished >= want; })) {
        error = "lookup of " + host_ + " timed out";
        return std::nullopt;
    }
    if (!state_->address) error = "lookup of " + host_ + ": " + state_->error;
    return state_->address;
}

}  // namespace postern::net
