// What a client asked for with the DSN extension (RFC 3461): per message RET and ENVID,
// per recipient NOTIFY and ORCPT. Plain data, shared by the SMTP parser (smtpproto), the
// sink (store), the queue and outbound delivery. Values are kept xtext-decoded.
#pragma once

#include <string>

namespace postern::core {

enum class DsnRet {
    Unspecified,  // no RET: failure reports carry the header section (as without DSN)
    Full,         // RET=FULL: reports carry the whole message
    Headers,      // RET=HDRS: reports carry the header section only
};

// NOTIFY bits (RFC 3461 4.1). 0 = no NOTIFY parameter: FAILURE and DELAY by default.
namespace notify {
constexpr unsigned Never = 1;
constexpr unsigned Success = 2;
constexpr unsigned Failure = 4;
constexpr unsigned Delay = 8;
}  // namespace notify

struct MessageDsn {
    DsnRet ret = DsnRet::Unspecified;
    std::string envid;  // ENVID, decoded; empty = none (an ENVID is never empty on the wire)
    bool empty() const { return ret == DsnRet::Unspecified && envid.empty(); }
};

struct RecipientDsn {
    unsigned notify = 0;    // notify:: bits; 0 = not given
    std::string orcptType;  // ORCPT addr-type ("rfc822"); empty = no ORCPT
    std::string orcpt;      // ORCPT address, decoded
    bool empty() const { return notify == 0 && orcptType.empty(); }
    bool wantsSuccess() const { return (notify & notify::Success) != 0; }
    bool wantsFailure() const { return notify == 0 || (notify & notify::Failure) != 0; }
    bool wantsDelay() const { return notify == 0 || (notify & notify::Delay) != 0; }
};

}  // namespace postern::core
