// posternd: one daemon, POCO ServerApplication, running the configured SMTP and POP3
// listeners (each a TCPServer with its own thread pool) over the wired services.
#pragma once

#include <Poco/Util/ServerApplication.h>

#include <string>
#include <utility>
#include <vector>

namespace postern::app {

class PosternServer : public Poco::Util::ServerApplication {
protected:
    void initialize(Poco::Util::Application& self) override;
    void defineOptions(Poco::Util::OptionSet& options) override;
    void handleOption(const std::string& name, const std::string& value) override;
    int main(const std::vector<std::string>& args) override;

private:
    int serve();
    void printHelp();

    bool helpRequested_ = false;
    bool versionRequested_ = false;
    bool checkOnly_ = false;
    std::string configFile_;
    std::string pidFile_;  // --pidfile (POCO removes it in a static destructor, which _Exit skips)
    std::vector<std::pair<std::string, std::string>> defines_;
};

}  // namespace postern::app
