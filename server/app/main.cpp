// posternd entry point.
#include "app/PosternServer.h"

#include "postern_build_version.h"

#include <csignal>
#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
    // A write to a peer that went away must be an EPIPE error for that session, not the end
    // of the daemon. POCO's send() passes MSG_NOSIGNAL, but OpenSSL's socket BIO writes with
    // write(2) (every TLS session), and so do libraries the plugins load. Set before any
    // thread exists, so every thread inherits it (Postfix and Dovecot do the same).
    std::signal(SIGPIPE, SIG_IGN);
    // --version / -v: the build's version (git describe, cmake/PosternVersion.cmake), answered
    // before POCO reads any configuration. Arguments of -D/-c/--config/--define are skipped.
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        if (std::strcmp(a, "--") == 0) break;
        if (std::strcmp(a, "-D") == 0 || std::strcmp(a, "-c") == 0 || std::strcmp(a, "--config") == 0 ||
            std::strcmp(a, "--define") == 0) {
            ++i;
            continue;
        }
        if (std::strcmp(a, "--version") == 0 || std::strcmp(a, "-v") == 0) {
            std::cout << "posternd " << POSTERN_BUILD_VERSION << std::endl;
            return 0;
        }
    }
    try {
        postern::app::PosternServer app;
        return app.run(argc, argv);
    } catch (Poco::Exception& e) {
        std::cerr << e.displayText() << std::endl;
        return Poco::Util::Application::EXIT_SOFTWARE;
    }
}
