// Ports of compromised-account detection (abuse/AccountSecurity): "is this account's
// outbound mail held?" for the SMTP policy and the queue runner, and the delivery outcomes
// (remote refusals, bounces) the detection counts per submitting account.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace postern::core {

// Thread-safe, cheap (answered from memory; the hot path of MAIL and of the queue runner).
class AccountHold {
public:
    virtual ~AccountHold() = default;
    // True while `user` (the canonical login, as in the queue envelope's "auth" line) is
    // flagged as compromised: new submissions get 451 4.7.1, queued mail waits. Also true for
    // everyone while the flagged set is not known yet (fail closed: a node that starts while
    // the shared database cannot answer must not send held accounts' mail).
    virtual bool isHeld(std::string_view user) const = 0;
    // False while the flagged set is not known yet (isHeld is then true for everyone).
    virtual bool holdsKnown() const { return true; }
};

// Thread-safe, cheap (recorded in memory, written in the background).
class DeliveryReport {
public:
    virtual ~DeliveryReport() = default;
    // A remote server refused `recipients` recipients of mail `user` submitted with a 5xx.
    virtual void remoteRejected(const std::string& user, std::size_t recipients) = 0;
    // A bounce (failure DSN) was generated for mail `user` submitted.
    virtual void bounced(const std::string& user, std::size_t bounces) = 0;
};

}  // namespace postern::core
