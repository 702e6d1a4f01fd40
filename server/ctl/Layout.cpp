// Where posternctl finds its defaults (see Layout.h).
#include "Layout.h"

#include <climits>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace postern::ctl {

namespace {

std::string realPath(const std::string& p) {
    char buf[PATH_MAX];
    return ::realpath(p.c_str(), buf) != nullptr ? std::string(buf) : p;
}

std::string parentOf(const std::string& p) {
    auto slash = p.rfind('/');
    return slash == std::string::npos || slash == 0 ? std::string("/") : p.substr(0, slash);
}

Layout decide() {
    Layout l;
    const std::string exeDir = parentOf(realPath("/proc/self/exe"));
    if (exeDir == realPath(POSTERN_BUILD_BIN_DIR)) {
        l.configFile = "etc/postern.properties";
        l.schemaDir = POSTERN_SCHEMA_DIR;
        l.pluginDir = POSTERN_PLUGIN_BUILD_DIR;
        return l;
    }
    l.installed = true;
    const std::string prefix = parentOf(exeDir);  // /usr for /usr/bin/posternctl
    const std::string root = prefix == "/" ? "" : prefix;
    // /usr -> /etc (also DIR/usr -> DIR/etc, a package extracted into DIR); /opt/x -> /opt/x/etc.
    const bool usr = prefix.size() >= 4 && prefix.compare(prefix.size() - 4, 4, "/usr") == 0;
    l.configFile = (usr ? root.substr(0, root.size() - 4) : root) + "/etc/postern/postern.properties";
    l.schemaDir = root + "/" POSTERN_INSTALL_DATADIR "/postern/schema/postgres";
    l.pluginDir = root + "/" POSTERN_INSTALL_LIBDIR "/postern";
    return l;
}

}  // namespace

const Layout& layout() {
    static const Layout l = decide();
    return l;
}

}  // namespace postern::ctl
