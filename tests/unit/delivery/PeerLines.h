// Shared by the delivery unit tests: a fake SMTP peer's input line by line, and the client
// settings their SmtpClients use.
#pragma once

#include "delivery/SmtpClient.h"

#include <Poco/Net/StreamSocket.h>

#include <string>

namespace postern::delivery::test {

// The next CRLF-terminated line `s` sent (`buf` keeps what came after it). false: the peer
// closed, the read timed out or failed.
inline bool nextLine(Poco::Net::StreamSocket& s, std::string& buf, std::string& line) {
    for (;;) {
        auto nl = buf.find("\r\n");
        if (nl != std::string::npos) {
            line = buf.substr(0, nl);
            buf.erase(0, nl + 2);
            return true;
        }
        char chunk[4096];
        int n = 0;
        try {
            n = s.receiveBytes(chunk, sizeof chunk);
        } catch (...) {
        }
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
}

// Every timeout `timeout` (a loopback peer answers at once or not at all).
inline ClientSettings settings(Millis timeout = Millis(2000)) {
    ClientSettings s;
    s.heloName = "mail.example.test";
    s.connectTimeout = s.greetingTimeout = s.mailTimeout = s.rcptTimeout = s.dataTimeout = s.dataBlockTimeout =
        s.dataDoneTimeout = timeout;
    return s;
}

}  // namespace postern::delivery::test
