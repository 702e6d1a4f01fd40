// Socket <-> SmtpSession glue for one client: implicit TLS, line and DATA reading with
// timeouts, STARTTLS, drain on shutdown. Every exception stops here.
#pragma once

#include "app/Services.h"
#include "app/SessionPrologue.h"
#include "smtp/SmtpSession.h"

#include <Poco/Net/TCPServerConnection.h>

namespace postern::app {

class SmtpConnection : public Poco::Net::TCPServerConnection {
public:
    SmtpConnection(const Poco::Net::StreamSocket& socket, Services& services,
                   const ListenerRuntime& listener, const smtp::SmtpSettings& settings);
    void run() override;

private:
    Services& services_;
    const ListenerRuntime& listener_;
    const smtp::SmtpSettings& settings_;
};

}  // namespace postern::app
