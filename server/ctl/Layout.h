// Where posternctl finds its defaults: the work tree's files when it runs from the build tree
// (build/bin/posternctl), the installed files when it runs from anywhere else (the Debian
// package: /usr/bin/posternctl, /etc/postern, /usr/share/postern, /usr/lib/<multiarch>/postern).
#pragma once

#include <string>

namespace postern::ctl {

struct Layout {
    bool installed = false;
    std::string configFile;  // build: etc/postern.properties (relative); installed: /etc/postern/postern.properties
    std::string schemaDir;   // db migrate's migrations
    std::string pluginDir;   // used when server.plugin_dir is empty
};

// Decided once from /proc/self/exe: the build tree's bin/ (POSTERN_BUILD_BIN_DIR) means the work
// tree; otherwise <prefix>/bin/posternctl means the files under <prefix> (and /etc for /usr,
// DIR/etc for DIR/usr: the package extracted into DIR).
const Layout& layout();

}  // namespace postern::ctl
