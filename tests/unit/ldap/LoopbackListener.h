// A listening TCP socket on 127.0.0.1:<ephemeral port>, for the fake LDAP servers of the unit
// tests (LdapDeadlineTest: one that never answers; LdapTimeLimitTest: a minimal LDAPv3 one).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <stdexcept>
#include <string>

namespace postern::test {

// The socket; its port in `port`. Throws std::runtime_error if it cannot listen.
inline int listenOnLoopback(int& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot listen on the loopback");
    }
    port = ntohs(a.sin_port);
    return fd;
}

inline std::string ldapUri(int port) { return "ldap://127.0.0.1:" + std::to_string(port) + "/"; }

// An LDAP backend's keys for such a server: 300ms deadlines, two connections, and a probe
// interval of 60s (longer than any test).
inline std::map<std::string, std::string> shortDeadlineConfig(const std::string& uri) {
    return {{"uris", uri},          {"base", "dc=example,dc=test"}, {"network_timeout", "300ms"},
            {"bind_timeout", "300ms"}, {"search_timeout", "300ms"},  {"pool_size", "2"},
            {"probe_interval", "60s"}};
}

}  // namespace postern::test
