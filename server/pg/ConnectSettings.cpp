// How to reach PostgreSQL: conninfo, password file, pool size and timeouts.
#include "pg/ConnectSettings.h"

#include "core/Duration.h"
#include "core/Text.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace postern::pg {

namespace {

// A duration key's value (core::parseDuration), the error naming the key.
std::chrono::milliseconds durationOf(const char* key, const std::string& value) {
    try {
        return core::parseDuration(value);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(key) + ": " + e.what());
    }
}

const char* const Known[] = {"conninfo", "password_file", "pool_size", "connect_timeout",
                             "statement_timeout", nullptr};

}  // namespace

const char* const* ConnectSettings::knownKeys() {
    return Known;
}

std::string readPasswordFile(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw std::invalid_argument("password_file " + path + ": " + std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        throw std::invalid_argument("password_file " + path + ": not a regular file");
    }
    // Like libpq's ~/.pgpass: a secret others can read is a leak waiting to happen.
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        throw std::invalid_argument("password_file " + path +
                                    " must not be group- or world-accessible (chmod 600)");
    }
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) {
        throw std::invalid_argument("password_file " + path + ": cannot read a password line");
    }
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    if (line.empty()) {
        throw std::invalid_argument("password_file " + path + ": the first line is empty");
    }
    return line;
}

ConnectSettings ConnectSettings::fromParams(const std::map<std::string, std::string>& params) {
    ConnectSettings s;
    if (auto it = params.find("conninfo"); it != params.end()) {
        s.conninfo = core::trimSpace(it->second);
    }
    if (s.conninfo.empty()) {
        throw std::invalid_argument("config key 'conninfo' is required (a libpq conninfo or postgresql:// URI)");
    }
    if (auto it = params.find("password_file"); it != params.end() && !core::trimSpace(it->second).empty()) {
        s.password = readPasswordFile(std::string(core::trimSpace(it->second)));
    }
    if (auto it = params.find("pool_size"); it != params.end()) {
        const std::string v(core::trimSpace(it->second));
        std::size_t used = 0;
        long n = -1;
        try {
            n = std::stol(v, &used);
        } catch (const std::exception&) {
            n = -1;
        }
        if (used != v.size() || n < 1 || n > 1000) {
            throw std::invalid_argument("invalid value '" + it->second + "' for pool_size (1..1000)");
        }
        s.poolSize = static_cast<std::size_t>(n);
    }
    if (auto it = params.find("connect_timeout"); it != params.end()) {
        s.connectTimeout = durationOf("connect_timeout", it->second);
        if (s.connectTimeout.count() == 0) {
            throw std::invalid_argument("connect_timeout must be more than 0 (an outage must fail fast)");
        }
    }
    if (auto it = params.find("statement_timeout"); it != params.end()) {
        s.statementTimeout = durationOf("statement_timeout", it->second);
    }
    return s;
}

}  // namespace postern::pg
