#include "delivery/DeliveryService.h"

#include "delivery/BounceSender.h"
#include "delivery/Dane.h"
#include "delivery/DeliveryAgent.h"
#include "delivery/MxResolver.h"
#include "delivery/QueueRunner.h"
#include "mtasts/MtaSts.h"
#include "mtasts/PgPolicyStore.h"

#include <Poco/Net/Context.h>

#include <algorithm>
#include <stdexcept>

namespace postern::delivery {

namespace {

Poco::Net::Context::Ptr clientContext(bool verify, const std::string& caFile) {
    Poco::Net::Context::Params p;
    p.verificationMode = verify ? Poco::Net::Context::VERIFY_STRICT : Poco::Net::Context::VERIFY_NONE;
    p.caLocation = verify ? caFile : "";
    p.loadDefaultCAs = verify && caFile.empty();
    p.cipherList = "HIGH:!aNULL:!MD5:!RC4";
    Poco::Net::Context::Ptr ctx = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
    ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
    // Opportunistic TLS (RFC 7435): encryption without authentication, so a self-signed
    // or mismatched certificate still beats clear text. 'verify' checks chain and name.
    ctx->enableExtendedCertificateVerification(verify);
    return ctx;
}

// Any policy dane/dane-only: DNSSEC-aware lookups (DO bit, trusted AD bit).
bool usesDane(const config::DeliveryConfig& c) {
    auto dane = [](TlsPolicy p) { return p == TlsPolicy::Dane || p == TlsPolicy::DaneOnly; };
    if (dane(c.tlsPolicy) || dane(c.relayhostTls)) return true;
    return std::any_of(c.tlsPolicies.begin(), c.tlsPolicies.end(), [&](const auto& kv) { return dane(kv.second); });
}

}  // namespace

DeliveryService::DeliveryService(const config::DeliveryConfig& config, std::string hostname,
                                 queue::OutboundQueue& queue, core::MessageSink& sink, core::UserDirectory& directory)
    : queue_(queue) {
    resolver_ = std::make_unique<MxResolver>(ResolverSettings{config.dnsServer, config.dnsTimeout, usesDane(config)});
    bounces_ = std::make_unique<BounceSender>(sink, directory, hostname, static_cast<std::size_t>(config.bounceSizeLimit));
    ClientSettings cs;
    cs.heloName = hostname;
    cs.connectTimeout = config.connectTimeout;
    cs.greetingTimeout = config.greetingTimeout;
    cs.mailTimeout = config.mailTimeout;
    cs.rcptTimeout = config.rcptTimeout;
    cs.dataTimeout = config.dataTimeout;
    cs.dataBlockTimeout = config.dataBlockTimeout;
    cs.dataDoneTimeout = config.dataDoneTimeout;
    cs.mimeOutputConversion = config.mimeOutputConversion;
    cs.tlsOpportunistic = clientContext(false, "");
    cs.tlsVerify = clientContext(true, config.tlsCaFile);
    cs.tlsDane = makeDaneContext();
    std::optional<Credentials> credentials;
    if (!config.relayhostAuthFile.empty()) credentials = DeliveryAgent::readCredentialsFile(config.relayhostAuthFile);
    agent_ = std::make_unique<DeliveryAgent>(config, hostname, queue, *resolver_, *bounces_, cs, credentials);
    if (config.mtaSts.enabled) {
        // The policy host is resolved like the MX hosts (delivery.dns_server).
        mtasts::Settings ms;
        ms.fetch = {config.mtaSts.fetchTimeout, static_cast<std::size_t>(config.mtaSts.maxPolicySize),
                    config.mtaSts.caFile, config.mtaSts.httpsPort};
        ms.dnsServer = config.dnsServer;
        ms.dnsTimeout = config.dnsTimeout;
        ms.cacheFile = config.mtaSts.cacheFile;
        ms.fetchRetry = std::chrono::duration_cast<std::chrono::seconds>(config.mtaSts.fetchRetry);
        ms.refreshInterval = std::chrono::duration_cast<std::chrono::seconds>(config.mtaSts.refreshInterval);
        MxResolver* resolver = resolver_.get();
        mtaSts_ = std::make_unique<mtasts::Engine>(
            ms, [resolver](const std::string& host, std::string& error) {
                MxResult r = resolver->resolveHost(host);
                std::vector<Poco::Net::IPAddress> out;
                for (const auto& h : r.hosts) out.insert(out.end(), h.addresses.begin(), h.addresses.end());
                if (out.empty()) error = r.error;
                return out;
            });
        agent_->setMtaSts(mtaSts_.get());
    }
    runner_ = std::make_unique<QueueRunner>(config, queue, *agent_);
}

DeliveryService::~DeliveryService() { stop(); }

void DeliveryService::setAccountSecurity(const core::AccountHold* hold, core::DeliveryReport* report) {
    runner_->setHold(hold);
    agent_->setReport(report);
}

void DeliveryService::setTlsOutcomeSink(
    std::function<void(const std::string&, const std::string&, const std::string&)> sink) {
    agent_->setTlsOutcomeSink(std::move(sink));
}

void DeliveryService::setCounters(core::EventCounters* counters) {
    agent_->setCounters(counters);
    if (mtaSts_) mtaSts_->setCounters(counters);
}

void DeliveryService::shareMtaStsPolicies(pg::Pool& pool) {
    if (!mtaSts_) return;
    mtaStsShared_ = std::make_unique<mtasts::PgPolicyStore>(pool);
    mtaSts_->cache().setShared(mtaStsShared_.get());
}

void DeliveryService::start() {
    queue_.setEnqueueListener([runner = runner_.get()](const queue::QueueEnvelope& e) { runner->onEnqueued(e); });
    runner_->start();
}

void DeliveryService::stop() {
    queue_.setEnqueueListener({});
    if (runner_) runner_->stop();
}

double DeliveryService::oldestAgeSeconds() const { return runner_ ? runner_->oldestAgeSeconds() : 0.0; }

}  // namespace postern::delivery
