// Server-side TLS context (POCO NetSSL over OpenSSL 3) built once from the config:
// certificate, key, minimum version, cipher list, server cipher preference.
#pragma once

#include <Poco/Net/Context.h>

#include <string>

namespace postern::net {

struct TlsSettings {
    std::string certFile;
    std::string keyFile;
    std::string minVersion = "1.2";  // "1.2" | "1.3"
    std::string ciphers;
};

// Throws Poco::Exception with a readable message if the files cannot be used.
Poco::Net::Context::Ptr makeServerContext(const TlsSettings& settings);

}  // namespace postern::net
