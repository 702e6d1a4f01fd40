// posternctl mta-sts show DOMAIN: the MTA-STS policy cached for DOMAIN (server/mtasts), as the
// delivery workers would use it: from delivery.mta_sts.cache_file.
#pragma once

#include "Command.h"
#include "UserCommands.h"

namespace postern::ctl {

// Exit: 0 shown; 64 usage; 67 no cached policy for DOMAIN; 74 the cache file cannot be read;
// 78 configuration.
int runMtaStsShow(CommandContext& context);

inline constexpr Command MtaStsShowCommand{
    "mta-sts show", "DOMAIN [--json] " POSTERN_CTL_COMMON,
    "show the MTA-STS policy cached for DOMAIN: id, mode, mx patterns, fetched, expires", &runMtaStsShow};

}  // namespace postern::ctl
