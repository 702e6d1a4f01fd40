// RFC 8461 3.3: GET https://mta-sts.<domain>/.well-known/mta-sts.txt. The certificate must
// chain to a trusted CA (delivery.mta_sts.ca_file, else the system store) and name
// mta-sts.<domain>; redirects are not followed; only 200 with Content-Type text/plain
// counts; the body is limited in size and the whole fetch in time.
#pragma once

#include <Poco/Net/IPAddress.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace postern::mtasts {

struct FetchSettings {
    std::chrono::milliseconds timeout{};  // delivery.mta_sts.fetch_timeout: the whole fetch
    std::size_t maxSize = 0;              // delivery.mta_sts.max_policy_size: the body
    std::string caFile;                   // delivery.mta_sts.ca_file; "" = system CA store
    std::uint16_t port = 443;             // delivery.mta_sts.https_port
};

struct FetchResult {
    bool ok = false;
    std::string body;   // ok: the policy text
    std::string error;  // not ok: why, for the log
};

// Addresses of a host name (the delivery resolver's A/AAAA lookup); empty + error on failure.
using HostResolver = std::function<std::vector<Poco::Net::IPAddress>(const std::string& host, std::string& error)>;

// Thread-safe after construction (one TLS context shared by all fetches).
class Fetcher {
public:
    // Throws std::runtime_error if the CA file cannot be loaded.
    Fetcher(FetchSettings settings, HostResolver resolve);
    ~Fetcher();
    Fetcher(const Fetcher&) = delete;
    Fetcher& operator=(const Fetcher&) = delete;

    FetchResult fetch(const std::string& domain) const;

private:
    struct Tls;
    FetchSettings settings_;
    HostResolver resolve_;
    std::unique_ptr<Tls> tls_;
};

// The HTTP response head and body as received: 200 + text/plain + body within maxSize, or
// an error. Pure (fuzzed with the policy parser).
FetchResult parseHttpResponse(const std::string& response, std::size_t maxSize);

}  // namespace postern::mtasts
