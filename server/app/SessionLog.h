// One key=value log line per operator event, session id first (docs: DESIGN "Logging").
#pragma once

#include <Poco/Logger.h>

#include <string>

namespace postern::app {

inline Poco::Logger& sessionLogger() { return Poco::Logger::get("postern.session"); }

}  // namespace postern::app
