#include "metrics/HealthServer.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>

namespace postern::metrics {

namespace {

using Poco::Net::HTTPResponse;

void reply(Poco::Net::HTTPServerResponse& response, HTTPResponse::HTTPStatus status, const std::string& contentType,
           const std::string& body) {
    response.setStatusAndReason(status);
    response.setContentType(contentType);
    response.setContentLength(static_cast<std::streamsize>(body.size()));
    response.set("Cache-Control", "no-store");
    response.setKeepAlive(false);
    // sendBuffer leaves the body out for HEAD.
    response.sendBuffer(body.data(), body.size());
}

class HealthHandler final : public Poco::Net::HTTPRequestHandler {
public:
    HealthHandler(const Registry& registry, const HealthServer::ReadinessCheck& readiness)
        : registry_(registry), readiness_(readiness) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
        static const std::string Text = "text/plain; charset=utf-8";
        // Exceptions must not leave a POCO thread (STYLE: they stop at the boundary).
        try {
            const std::string& method = request.getMethod();
            if (method != Poco::Net::HTTPRequest::HTTP_GET && method != Poco::Net::HTTPRequest::HTTP_HEAD) {
                response.set("Allow", "GET, HEAD");
                reply(response, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, Text, "method not allowed\n");
                return;
            }
            std::string path;
            try {
                path = Poco::URI(request.getURI()).getPath();
            } catch (const Poco::SyntaxException&) {
                reply(response, HTTPResponse::HTTP_BAD_REQUEST, Text, "bad request\n");
                return;
            }
            if (path == "/healthz") {
                reply(response, HTTPResponse::HTTP_OK, Text, "ok\n");
            } else if (path == "/readyz") {
                // Fail closed: no check, or a check that throws, means not ready.
                Readiness r{false, "no readiness check"};
                try {
                    if (readiness_) r = readiness_();
                } catch (...) {
                    r = {false, "readiness check failed"};
                }
                if (r.ready) reply(response, HTTPResponse::HTTP_OK, Text, "ok\n");
                else reply(response, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, Text, "not ready: " + r.reason + "\n");
            } else if (path == "/metrics") {
                reply(response, HTTPResponse::HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", registry_.render());
            } else {
                reply(response, HTTPResponse::HTTP_NOT_FOUND, Text, "not found\n");
            }
        } catch (...) {
            // The connection is most likely gone; nothing more to say to it.
        }
    }

private:
    const Registry& registry_;
    const HealthServer::ReadinessCheck& readiness_;
};

class HealthHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
public:
    HealthHandlerFactory(const Registry& registry, HealthServer::ReadinessCheck readiness)
        : registry_(registry), readiness_(std::move(readiness)) {}

    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
        return new HealthHandler(registry_, readiness_);
    }

private:
    const Registry& registry_;
    HealthServer::ReadinessCheck readiness_;  // owned here; the factory lives as long as the server
};

}  // namespace

HealthServer::HealthServer(const Registry& registry, ReadinessCheck readiness, const HealthServerOptions& options) {
    Poco::Net::ServerSocket socket;
    // SO_REUSEADDR for quick restarts, but not SO_REUSEPORT (what bind(addr, true) also sets
    // in POCO 1.11): a second process on the same port must fail here, not share it.
    socket.bind(Poco::Net::SocketAddress(options.address, options.port), true, false);
    socket.listen(64);
    address_ = socket.address();

    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(options.maxThreads);
    params->setMaxQueued(options.maxQueued);
    params->setKeepAlive(false);  // one request per connection: nothing lingers at drain
    params->setTimeout(Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(options.timeout.count()) * 1000));
    params->setServerName("postern");

    // Its own pool: a stuck scraper cannot take threads from a mail listener, and POCO's
    // shared default pool is never used (DESIGN: Threads).
    pool_ = std::make_unique<Poco::ThreadPool>("health", 1, options.maxThreads + 1, 60);
    server_ = std::make_unique<Poco::Net::HTTPServer>(new HealthHandlerFactory(registry, std::move(readiness)), *pool_,
                                                      socket, params);
}

HealthServer::~HealthServer() {
    try {
        stop();
    } catch (...) {
    }
}

void HealthServer::start() {
    if (started_ || stopped_) return;
    server_->start();
    started_ = true;
}

void HealthServer::stop() {
    if (stopped_) return;
    stopped_ = true;
    if (started_) server_->stopAll(true);
    pool_->joinAll();
}

}  // namespace postern::metrics
