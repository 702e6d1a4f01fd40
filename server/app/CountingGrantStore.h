// GrantStore decorator that counts grants made and used (postern_grants_total).
#pragma once

#include "app/Telemetry.h"
#include "core/GrantStore.h"

namespace postern::app {

// Thread-safe if the inner store is. Neither object is owned.
class CountingGrantStore final : public core::GrantStore {
public:
    CountingGrantStore(core::GrantStore& inner, Telemetry& telemetry) : inner_(inner), telemetry_(telemetry) {}
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override {
        bool ok = inner_.grant(client, grant);
        telemetry_.count("grant", ok ? "created" : "failed");
        return ok;
    }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress& client, const std::string& sender, core::Grant* out) override {
        core::Answer a = inner_.lookup(client, sender, out);
        if (a == core::Answer::Yes) telemetry_.count("grant", "used");
        else if (a == core::Answer::TempFail) telemetry_.count("grant", "tempfail");
        return a;
    }

private:
    core::GrantStore& inner_;
    Telemetry& telemetry_;
};

}  // namespace postern::app
