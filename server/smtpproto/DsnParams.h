// The DSN parameters of MAIL and RCPT (RFC 3461 4.1-4.4), validated and xtext-decoded:
//   MAIL ... RET=FULL|HDRS ENVID=<xtext, at most 100 characters>
//   RCPT ... NOTIFY=NEVER | NOTIFY=<SUCCESS,FAILURE,DELAY in any combination>
//            ORCPT=<addr-type>;<xtext> (at most 500 characters)
// Keywords and RET/NOTIFY values are case-insensitive. Refused (-> 501 5.5.4): a
// parameter given twice, a missing or malformed value, NEVER combined with anything,
// a repeated NOTIFY item, an unknown item, bad xtext, over-long values.
#pragma once

#include "core/DsnRequest.h"

#include <optional>
#include <string>
#include <string_view>

namespace postern::smtp {

enum class DsnParamResult {
    NotDsn,  // not a DSN keyword for this command: the caller goes on with its own
    Ok,      // taken into `dsn`
    Bad,     // malformed or duplicate: 501 5.5.4 (`why` says which)
};

constexpr std::size_t MaxEnvidLength = 100;  // RFC 3461 4.4
constexpr std::size_t MaxOrcptLength = 500;  // RFC 3461 4.2

// One esmtp-param of MAIL (`value` nullopt: "KEY" without "=").
DsnParamResult parseMailDsnParam(std::string_view key, std::optional<std::string_view> value, core::MessageDsn& dsn,
                                 std::string& why);
// One esmtp-param of RCPT.
DsnParamResult parseRcptDsnParam(std::string_view key, std::optional<std::string_view> value,
                                 core::RecipientDsn& dsn, std::string& why);

// NOTIFY value -> bits; 0 if malformed.
unsigned parseNotify(std::string_view value);
// Bits -> "NEVER" / "SUCCESS,FAILURE,DELAY" (canonical order); "" for 0.
std::string formatNotify(unsigned bits);
// RET for MAIL and the queue file: "FULL" / "HDRS" / "".
std::string formatRet(core::DsnRet ret);

}  // namespace postern::smtp
