// Socket <-> Pop3Session glue for one client: implicit TLS, STLS, idle timeout,
// drain on shutdown. Every exception stops here; a drop never deletes mail.
#pragma once

#include "app/Services.h"
#include "app/SessionPrologue.h"
#include "pop3/Pop3Session.h"

#include <Poco/Net/TCPServerConnection.h>

namespace postern::app {

class Pop3Connection : public Poco::Net::TCPServerConnection {
public:
    Pop3Connection(const Poco::Net::StreamSocket& socket, Services& services,
                   const ListenerRuntime& listener, const pop3::Pop3Settings& settings);
    void run() override;

private:
    Services& services_;
    const ListenerRuntime& listener_;
    const pop3::Pop3Settings& settings_;
};

}  // namespace postern::app
