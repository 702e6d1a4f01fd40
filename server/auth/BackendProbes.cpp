// Readiness of the auth backends: cached probe() answers, one probe per backend at a time.
#include "auth/BackendProbes.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

namespace postern::auth {

namespace api = plugins::api;

namespace {

Poco::Logger& logger() {
    static Poco::Logger& l = Poco::Logger::get("postern.auth");
    return l;
}

}  // namespace

struct BackendProbes::Slot {
    std::string instance;
    api::Backend* backend = nullptr;
    std::mutex mutex;  // held while probing: the single flight
    bool probed = false;
    bool up = false;
    std::string detail;
    std::chrono::steady_clock::time_point at;
    // A copy of probed/up/detail for lastKnown(), which must not wait for a probe.
    std::mutex lastMutex;
    bool lastProbed = false;
    bool lastUp = false;
    std::string lastDetail;
};

BackendProbes::BackendProbes(const std::vector<std::pair<std::string, api::Backend*>>& backends,
                             std::chrono::milliseconds maxAge)
    : maxAge_(maxAge) {
    for (const auto& [instance, backend] : backends) {
        auto s = std::make_unique<Slot>();
        s->instance = instance;
        s->backend = backend;
        slots_.push_back(std::move(s));
    }
}

BackendProbes::~BackendProbes() = default;

BackendHealth BackendProbes::checkOne(Slot& slot) {
    std::lock_guard lock(slot.mutex);
    const auto now = std::chrono::steady_clock::now();
    if (!slot.probed || now - slot.at >= maxAge_) {
        api::ProbeAnswer answer{api::Status::TempFail, "no backend"};
        if (slot.backend != nullptr) {
            try {
                answer = slot.backend->probe();
            } catch (...) {
                answer = {api::Status::TempFail, "probe threw"};
            }
        }
        const bool up = answer.status == api::Status::Ok;
        if (!up && (slot.up || !slot.probed)) {
            logger().warning(
                core::EventLine("backend.down").add("backend", slot.instance).text("detail", answer.detail).str());
        } else if (up && slot.probed && !slot.up) {
            logger().notice(core::EventLine("backend.up").add("backend", slot.instance).str());
        }
        slot.probed = true;
        slot.up = up;
        slot.detail = up ? answer.detail : (answer.detail.empty() ? std::string("cannot answer") : answer.detail);
        // Age counts from the answer, so a slow (timed-out) probe is not repeated at once.
        slot.at = std::chrono::steady_clock::now();
        std::lock_guard last(slot.lastMutex);
        slot.lastProbed = true;
        slot.lastUp = slot.up;
        slot.lastDetail = slot.detail;
    }
    return {slot.instance, slot.up, slot.detail};
}

std::vector<BackendHealth> BackendProbes::lastKnown() const {
    std::vector<BackendHealth> out;
    for (const auto& s : slots_) {
        std::lock_guard last(s->lastMutex);
        if (s->lastProbed) out.push_back({s->instance, s->lastUp, s->lastDetail});
    }
    return out;
}

std::vector<BackendHealth> BackendProbes::check() {
    std::vector<BackendHealth> out;
    out.reserve(slots_.size());
    for (auto& s : slots_) {
        out.push_back(checkOne(*s));
    }
    return out;
}

}  // namespace postern::auth
