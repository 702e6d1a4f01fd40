// The TXT records of one name through libresolv, with the delivery resolver's settings
// (delivery.dns_server / delivery.dns_timeout), so tests can point it at a local DNS.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace postern::mtasts {

enum class TxtStatus {
    Found,     // records (possibly none of them MTA-STS)
    NotFound,  // NXDOMAIN or no TXT record
    TempFail,  // SERVFAIL, timeout, REFUSED, malformed answer
};

struct TxtAnswer {
    TxtStatus status = TxtStatus::TempFail;
    std::vector<std::string> records;  // each record's character-strings concatenated
};

// server: "ip:port" (IPv4) or "" = /etc/resolv.conf; timeout per try (two tries).
TxtAnswer lookupTxt(const std::string& name, const std::string& server, std::chrono::milliseconds timeout);

}  // namespace postern::mtasts
