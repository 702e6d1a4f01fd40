#include "metrics/HealthServer.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>
#include <Poco/Util/Timer.h>
#include <Poco/Util/TimerTask.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdexcept>
#include <thread>

namespace postern::metrics {

// Runs the readiness check on a thread of its own (started on the first request), one run at
// a time; requests wait for a run at most readyTimeout.
class HealthServer::Probe {
public:
    Probe(ReadinessCheck check, std::chrono::milliseconds timeout) : check_(std::move(check)), timeout_(timeout) {}
    ~Probe() { stop(); }
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;

    Readiness get() {
        std::unique_lock lock(mutex_);
        if (stopping_) return {false, "shutting down"};
        if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
        // Nothing requested or running: ask for a run. Otherwise the pending or running one
        // answers this request too (a check hung on a frozen database is not run twice).
        if (requested_ == finished_) {
            ++requested_;
            wake_.notify_all();
        }
        const std::uint64_t want = requested_;
        if (!done_.wait_for(lock, timeout_, [&] { return finished_ >= want || stopping_; }) || finished_ < want) {
            return {false, "probe timed out after " + std::to_string(timeout_.count()) + "ms"};
        }
        return last_;
    }

    // Waits for a run in progress (the check is expected to be bounded), then ends the thread.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_all();
        done_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stopping_ || requested_ > finished_; });
            if (stopping_) return;
            const std::uint64_t run = requested_;
            lock.unlock();
            // Fail closed: no check, or a check that throws, means not ready.
            Readiness r{false, "no readiness check"};
            try {
                if (check_) r = check_();
            } catch (...) {
                r = {false, "readiness check failed"};
            }
            lock.lock();
            last_ = std::move(r);
            finished_ = run;
            done_.notify_all();
        }
    }

    const ReadinessCheck check_;
    const std::chrono::milliseconds timeout_;
    std::mutex mutex_;
    std::condition_variable wake_;  // a run was requested, or stop
    std::condition_variable done_;  // a run finished, or stop
    std::uint64_t requested_ = 0;   // number of the latest run asked for
    std::uint64_t finished_ = 0;    // number of the latest run finished (runs are in order)
    Readiness last_;
    bool stopping_ = false;
    std::thread thread_;
};

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
    HealthHandler(const Registry& registry, HealthServer::Probe& probe) : registry_(registry), probe_(probe) {}

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
                // Bounded by readyTimeout whatever the check does (fail closed).
                Readiness r{false, "readiness check failed"};
                try {
                    r = probe_.get();
                } catch (...) {
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
    HealthServer::Probe& probe_;
};

// Cuts one connection (shutdown of its socket) when a deadline passes first. It reaches the
// socket through its own dup() of the descriptor: whatever POCO has closed meanwhile, what is
// shut down is this connection, never a reused descriptor number. Shared by the
// connection's thread and the timer's.
class Cutter {
public:
    explicit Cutter(int fd) : fd_(::fcntl(fd, F_DUPFD_CLOEXEC, 0)) {}
    ~Cutter() { end(); }
    Cutter(const Cutter&) = delete;
    Cutter& operator=(const Cutter&) = delete;

    // A new deadline replaces the one before: returns its number.
    std::uint64_t arm() {
        std::lock_guard lock(mutex_);
        return ++armed_;
    }
    // Deadline `n` passed: cut, unless a later one replaced it or the connection ended.
    void cut(std::uint64_t n) {
        std::lock_guard lock(mutex_);
        if (over_ || n != armed_ || fd_ < 0) return;
        over_ = true;
        ::shutdown(fd_, SHUT_RDWR);  // the blocked read or write returns; the connection ends
    }
    // The connection ended: the dup is closed now (a cancelled timer task keeps this object
    // until its time, which must not keep the socket open).
    void end() {
        std::lock_guard lock(mutex_);
        over_ = true;
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    std::mutex mutex_;
    int fd_;
    std::uint64_t armed_ = 0;
    bool over_ = false;
};

class CutTask final : public Poco::Util::TimerTask {
public:
    CutTask(std::shared_ptr<Cutter> cutter, std::uint64_t n) : cutter_(std::move(cutter)), n_(n) {}
    void run() override { cutter_->cut(n_); }

private:
    std::shared_ptr<Cutter> cutter_;
    std::uint64_t n_;
};

// The deadlines of one connection: first for its request head (requestTimeout), then, once
// the head is read, for the answer (readyTimeout, what /readyz may wait, plus requestTimeout
// to write it), so neither a slow sender nor a slow reader holds one of the few threads.
class ConnectionDeadline {
public:
    ConnectionDeadline(Poco::Util::Timer& timer, int fd, std::chrono::milliseconds answerBudget)
        : timer_(timer), cutter_(std::make_shared<Cutter>(fd)), answerBudget_(answerBudget) {}
    ~ConnectionDeadline() {
        cutter_->end();
        if (task_) task_->cancel();
    }
    void start(std::chrono::milliseconds budget) {
        if (task_) task_->cancel();
        task_ = new CutTask(cutter_, cutter_->arm());
        timer_.schedule(task_, Poco::Timestamp() + static_cast<Poco::Timestamp::TimeDiff>(budget.count()) * 1000);
    }
    void headRead() { start(answerBudget_); }

private:
    Poco::Util::Timer& timer_;
    std::shared_ptr<Cutter> cutter_;
    std::chrono::milliseconds answerBudget_;
    Poco::Util::TimerTask::Ptr task_;
};

// The deadline of the connection this thread serves (set by DeadlineConnection::run).
thread_local ConnectionDeadline* currentDeadline = nullptr;

class HealthHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
public:
    HealthHandlerFactory(const Registry& registry, std::shared_ptr<HealthServer::Probe> probe)
        : registry_(registry), probe_(std::move(probe)) {}

    // Called once the request head was read.
    Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
        if (currentDeadline) currentDeadline->headRead();
        return new HealthHandler(registry_, *probe_);
    }

private:
    const Registry& registry_;
    std::shared_ptr<HealthServer::Probe> probe_;  // shared: the factory lives as long as the server
};

// What every health connection is served with: the request parser's parameters, the handler
// factory, and the deadlines (health.request_timeout for the head, ready_timeout more for
// the answer).
struct DeadlineSettings {
    Poco::Net::HTTPServerParams::Ptr params;
    Poco::Net::HTTPRequestHandlerFactory::Ptr factory;
    Poco::Util::Timer& timer;
    std::chrono::milliseconds budget;
    std::chrono::milliseconds readyBudget;
};

// POCO's HTTP connection (the request parser) under a deadline for the request head: POCO's
// own timeout is per read, so a client sending a byte every few seconds held a thread for
// hours, and two such clients starved the probes.
class DeadlineConnection final : public Poco::Net::TCPServerConnection {
public:
    DeadlineConnection(const Poco::Net::StreamSocket& socket, const DeadlineSettings& settings)
        : TCPServerConnection(socket), settings_(settings) {}

    void run() override {
        ConnectionDeadline deadline(settings_.timer, socket().impl()->sockfd(),
                                    settings_.readyBudget + settings_.budget);
        deadline.start(settings_.budget);
        currentDeadline = &deadline;
        struct Reset {
            ~Reset() { currentDeadline = nullptr; }
        } reset;
        Poco::Net::HTTPServerConnection http(socket(), settings_.params, settings_.factory);
        http.run();
    }

private:
    const DeadlineSettings settings_;
};

class DeadlineConnectionFactory final : public Poco::Net::TCPServerConnectionFactory {
public:
    explicit DeadlineConnectionFactory(DeadlineSettings settings) : settings_(std::move(settings)) {}
    Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& socket) override {
        return new DeadlineConnection(socket, settings_);
    }

private:
    const DeadlineSettings settings_;
};

}  // namespace

HealthServer::HealthServer(const Registry& registry, ReadinessCheck readiness, const HealthServerOptions& options) {
    if (options.requestTimeout.count() <= 0 || options.readyTimeout.count() <= 0)
        throw std::invalid_argument("health: request_timeout and ready_timeout must be more than 0");
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
    probe_ = std::make_shared<Probe>(std::move(readiness), options.readyTimeout);
    timer_ = std::make_unique<Poco::Util::Timer>();
    const auto budget = options.requestTimeout;
    server_ = std::make_unique<Poco::Net::TCPServer>(
        new DeadlineConnectionFactory(DeadlineSettings{params, new HealthHandlerFactory(registry, probe_), *timer_,
                                                       budget, options.readyTimeout}),
        *pool_,
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
    if (started_) server_->stop();
    pool_->joinAll();
    timer_->cancel(true);
    probe_->stop();  // after the requests: none waits on it any more
}

}  // namespace postern::metrics
