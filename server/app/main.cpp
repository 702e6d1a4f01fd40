// posternd entry point.
#include "app/PosternServer.h"

#include "postern_build_version.h"

#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
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
