#include "net/TlsContext.h"

#include <Poco/Net/SSLManager.h>

namespace postern::net {

Poco::Net::Context::Ptr makeServerContext(const TlsSettings& s) {
    Poco::Net::Context::Params params;
    params.privateKeyFile = s.keyFile;
    params.certificateFile = s.certFile;
    params.verificationMode = Poco::Net::Context::VERIFY_NONE;  // clients are authenticated by SASL
    params.loadDefaultCAs = false;
    params.cipherList = s.ciphers.empty() ? "HIGH:!aNULL:!MD5" : s.ciphers;
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, params);
    ctx->requireMinimumProtocol(s.minVersion == "1.3" ? Poco::Net::Context::PROTO_TLSV1_3
                                                      : Poco::Net::Context::PROTO_TLSV1_2);
    ctx->preferServerCiphers();
    // Session resumption saves a full handshake for clients that reconnect often
    // (mail programs polling POP3, submission bursts).
    ctx->enableSessionCache(true, "postern");
    ctx->setSessionCacheSize(20480);
    ctx->setSessionTimeout(300);
    return ctx;
}

}  // namespace postern::net
