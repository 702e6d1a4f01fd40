// Host side of the C boundary: a plugin's C table wrapped as an api::Backend.
#include "auth/PluginBackend.h"

#include <stdexcept>
#include <vector>

namespace postern::auth {

namespace api = plugins::api;

namespace {

postern_str view(const std::string& s) { return {s.data(), s.size()}; }
std::string str(postern_str s) { return s.data == nullptr ? std::string() : std::string(s.data, s.len); }

std::vector<std::string> strings(const postern_str* p, std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; p != nullptr && i < n; ++i) {
        out.push_back(str(p[i]));
    }
    return out;
}

api::UserRecord recordOf(const postern_user_record& r) {
    api::UserRecord out;
    out.user = str(r.user);
    out.passwordHash = str(r.password_hash);
    out.senderAddresses = strings(r.senders, r.sender_count);
    out.mailbox = str(r.mailbox);
    for (std::size_t i = 0; r.extra != nullptr && i < r.extra_count; ++i) {
        out.extra[str(r.extra[i].key)] = str(r.extra[i].value);
    }
    return out;
}

api::UserInfo infoOf(const postern_user_info& u) {
    api::UserInfo out;
    out.address = str(u.address);
    out.enabled = u.enabled != 0;
    out.scheme = str(u.scheme);
    out.mailbox = str(u.mailbox);
    out.quotaBytes = u.quota_bytes;
    out.senders = strings(u.senders, u.sender_count);
    out.aliases = strings(u.aliases, u.alias_count);
    out.created = str(u.created);
    out.updated = str(u.updated);
    return out;
}

// What the plugin's callbacks deliver during one call. A callback never throws into the
// plugin: a failure to copy is remembered and the call answers TempFail / Failed.
struct Collector {
    bool failed = false;
    bool gotAuth = false;
    bool gotLookup = false;
    api::AuthAnswer auth;
    api::LookupAnswer lookup;
    std::vector<api::UserInfo> users;
    std::string message;
    std::vector<api::AppPasswordInfo> appPasswords;  // ABI 4
    bool requireAppPassword = false;

    postern_sink sink() {
        return postern_sink{this, &onAuth, &onLookup, &onUser, &onMessage, &onAppPassword, &onRequireAppPassword};
    }

    static Collector& of(void* ctx) { return *static_cast<Collector*>(ctx); }

    static void onAuth(void* ctx, const postern_auth_answer* a) {
        Collector& c = of(ctx);
        try {
            if (a != nullptr) {
                c.auth.status = PluginBackend::readStatus(a->status);
                c.auth.verified = a->verified != 0;
                c.auth.record = recordOf(a->record);
                c.auth.detail = str(a->detail);
                // ABI 4: app passwords
                c.auth.refusal = str(a->refusal);
                c.auth.appPasswordId = str(a->app_password_id);
                c.auth.appPasswordExpires = a->app_password_expires;
                c.auth.appPasswordIpBound = a->app_password_ip_bound != 0;
                c.auth.appPasswordLastUsed = a->app_password_last_used;
                c.auth.appPasswordLastIp = str(a->app_password_last_ip);
                c.auth.storedScheme = str(a->stored_scheme);
                c.gotAuth = true;
            }
        } catch (...) {
            c.failed = true;
        }
    }
    static void onLookup(void* ctx, const postern_lookup_answer* a) {
        Collector& c = of(ctx);
        try {
            if (a != nullptr) {
                c.lookup.status = PluginBackend::readStatus(a->status);
                c.lookup.isMailbox = a->is_mailbox != 0;
                c.lookup.record = recordOf(a->record);
                c.lookup.aliasDestinations = strings(a->alias_destinations, a->alias_count);
                c.lookup.detail = str(a->detail);
                c.gotLookup = true;
            }
        } catch (...) {
            c.failed = true;
        }
    }
    static void onUser(void* ctx, const postern_user_info* u) {
        Collector& c = of(ctx);
        try {
            if (u != nullptr) {
                c.users.push_back(infoOf(*u));
            }
        } catch (...) {
            c.failed = true;
        }
    }
    static void onAppPassword(void* ctx, const postern_app_password_info* i) {
        Collector& c = of(ctx);
        try {
            if (i != nullptr) {
                api::AppPasswordInfo out;
                out.id = str(i->id);
                out.label = str(i->label);
                out.scopes = str(i->scopes);
                out.expires = i->expires;
                out.networks = str(i->networks);
                out.created = i->created;
                out.lastUsed = i->last_used;
                out.lastIp = str(i->last_ip);
                out.revoked = i->revoked;
                c.appPasswords.push_back(std::move(out));
            }
        } catch (...) {
            c.failed = true;
        }
    }
    static void onRequireAppPassword(void* ctx, int32_t on) { of(ctx).requireAppPassword = on != 0; }
    static void onMessage(void* ctx, postern_str text) {
        Collector& c = of(ctx);
        try {
            c.message = str(text);
        } catch (...) {
            c.failed = true;
        }
    }
};

api::WriteAnswer writeAnswer(postern_status s, Collector& c) {
    if (c.failed) {
        return {api::WriteStatus::Failed, "out of memory copying the plugin's answer"};
    }
    api::WriteAnswer a{PluginBackend::writeStatus(s), std::move(c.message)};
    if (a.status != api::WriteStatus::Ok && a.detail.empty()) {
        a.detail = "plugin status " + std::to_string(s);
    }
    return a;
}

api::WriteAnswer missing() {
    return {api::WriteStatus::Unsupported, "the plugin has no such entry point"};
}

}  // namespace

api::Status PluginBackend::readStatus(postern_status s) {
    switch (s) {
    case POSTERN_OK: return api::Status::Ok;
    case POSTERN_BAD_CREDENTIALS: return api::Status::BadCredentials;
    case POSTERN_UNKNOWN_USER: return api::Status::UnknownUser;
    case POSTERN_DISABLED: return api::Status::Disabled;
    case POSTERN_NOT_FOUND: return api::Status::NotFound;
    default: return api::Status::TempFail;
    }
}

api::WriteStatus PluginBackend::writeStatus(postern_status s) {
    switch (s) {
    case POSTERN_OK: return api::WriteStatus::Ok;
    case POSTERN_UNKNOWN_USER: return api::WriteStatus::UnknownUser;
    case POSTERN_UNKNOWN_DOMAIN: return api::WriteStatus::UnknownDomain;
    case POSTERN_EXISTS: return api::WriteStatus::Exists;
    case POSTERN_INVALID: return api::WriteStatus::Invalid;
    case POSTERN_UNSUPPORTED: return api::WriteStatus::Unsupported;
    case POSTERN_TEMPFAIL: return api::WriteStatus::TempFail;
    case POSTERN_IO_ERROR: return api::WriteStatus::IoError;
    case POSTERN_CONFIG_ERROR: return api::WriteStatus::ConfigError;
    case POSTERN_CHANGED: return api::WriteStatus::Changed;
    default: return api::WriteStatus::Failed;
    }
}

PluginBackend::PluginBackend(const postern_plugin_table* table, const std::map<std::string, std::string>& config,
                             std::uint32_t flags)
    : table_(table) {
    std::vector<postern_kv> kv;
    kv.reserve(config.size());
    for (const auto& [k, v] : config) {
        kv.push_back({view(k), view(v)});
    }
    char error[1024] = {0};
    backend_ = table_->create(kv.data(), kv.size(), flags, error, sizeof error);
    if (backend_ == nullptr) {
        error[sizeof error - 1] = '\0';
        throw std::runtime_error(error[0] != '\0' ? std::string(error) : std::string("create() failed"));
    }
}

PluginBackend::~PluginBackend() {
    // Made by the plugin's allocator: only its destroy() may free it.
    if (backend_ != nullptr) {
        table_->destroy(backend_);
    }
}

api::AuthAnswer PluginBackend::authenticate(const std::string& user, const std::string& password,
                                            const std::string& service, const std::string& clientIp) noexcept {
    try {
        Collector c;
        const postern_sink sink = c.sink();
        const postern_status s =
            table_->authenticate(backend_, view(user), view(password), view(service), view(clientIp), &sink);
        if (c.failed || !c.gotAuth || readStatus(s) != c.auth.status) {
            api::AuthAnswer a;  // TempFail
            a.detail = "plugin gave no consistent answer";
            return a;
        }
        return std::move(c.auth);
    } catch (...) {
        return api::AuthAnswer{};  // TempFail
    }
}

api::LookupAnswer PluginBackend::lookup(const std::string& address) noexcept {
    try {
        Collector c;
        const postern_sink sink = c.sink();
        const postern_status s = table_->lookup(backend_, view(address), &sink);
        if (c.failed || !c.gotLookup || readStatus(s) != c.lookup.status) {
            api::LookupAnswer a;
            a.detail = "plugin gave no consistent answer";
            return a;
        }
        return std::move(c.lookup);
    } catch (...) {
        return api::LookupAnswer{};  // TempFail
    }
}

api::Status PluginBackend::hasDomain(const std::string& domain) noexcept {
    const api::Status s = readStatus(table_->has_domain(backend_, view(domain)));
    // Only yes / no / try later are answers here.
    return s == api::Status::Ok || s == api::Status::NotFound ? s : api::Status::TempFail;
}

api::ProbeAnswer PluginBackend::probe() noexcept {
    try {
        Collector c;
        const postern_sink sink = c.sink();
        const api::Status s = readStatus(table_->probe(backend_, &sink));
        if (s == api::Status::Ok && !c.failed) {
            return {api::Status::Ok, ""};
        }
        return {api::Status::TempFail, c.message.empty() ? std::string("probe failed") : c.message};
    } catch (...) {
        return {api::Status::TempFail, "probe failed"};
    }
}

// Every write goes the same way: call with a sink, map the status, keep the message.
#define POSTERN_WRITE_CALL(fn, ...)                                                    \
    try {                                                                              \
        if (table_->fn == nullptr) {                                                   \
            return missing();                                                          \
        }                                                                              \
        Collector c;                                                                   \
        const postern_sink sink = c.sink();                                            \
        const postern_status s = table_->fn(backend_, __VA_ARGS__, &sink);             \
        return writeAnswer(s, c);                                                      \
    } catch (...) {                                                                    \
        return {api::WriteStatus::Failed, "unexpected error"};                         \
    }

api::WriteAnswer PluginBackend::setPassword(const std::string& user, const std::string& newHash) noexcept {
    POSTERN_WRITE_CALL(set_password, view(user), view(newHash))
}

api::WriteAnswer PluginBackend::replacePassword(const std::string& user, const std::string& oldHash,
                                                const std::string& newHash) noexcept {
    // Optional: a plugin built before it has a table that ends before this member.
    if (table_->table_size < offsetof(postern_plugin_table, replace_password) + sizeof(table_->replace_password))
        return missing();
    POSTERN_WRITE_CALL(replace_password, view(user), view(oldHash), view(newHash))
}

api::WriteAnswer PluginBackend::checkNewUser(const std::string& address) noexcept {
    POSTERN_WRITE_CALL(check_new_user, view(address))
}

api::WriteAnswer PluginBackend::setEnabled(const std::string& user, bool enabled) noexcept {
    POSTERN_WRITE_CALL(set_enabled, view(user), enabled ? 1 : 0)
}

api::WriteAnswer PluginBackend::removeUser(const std::string& user) noexcept {
    POSTERN_WRITE_CALL(remove_user, view(user))
}

// ABI 4: app passwords.
api::WriteAnswer PluginBackend::revokeAppPassword(const std::string& user, const std::string& id) noexcept {
    POSTERN_WRITE_CALL(revoke_app_password, view(user), view(id))
}

api::WriteAnswer PluginBackend::setRequireAppPassword(const std::string& user, bool on) noexcept {
    POSTERN_WRITE_CALL(set_require_app_password, view(user), on ? 1 : 0)
}

api::WriteAnswer PluginBackend::touchAppPassword(const std::string& user, const std::string& id,
                                                 const std::string& clientIp) noexcept {
    POSTERN_WRITE_CALL(touch_app_password, view(user), view(id), view(clientIp))
}

#undef POSTERN_WRITE_CALL

api::WriteAnswer PluginBackend::addAppPassword(const api::NewAppPassword& p) noexcept {
    try {
        if (table_->add_app_password == nullptr) {
            return missing();
        }
        const postern_new_app_password n{view(p.user),   view(p.id),      view(p.label),    view(p.passwordHash),
                                         view(p.scopes), p.expires,       view(p.networks), p.created};
        Collector c;
        const postern_sink sink = c.sink();
        return writeAnswer(table_->add_app_password(backend_, &n, &sink), c);
    } catch (...) {
        return {api::WriteStatus::Failed, "unexpected error"};
    }
}

api::WriteAnswer PluginBackend::listAppPasswords(const std::string& user, bool& requireAppPassword,
                                                 std::vector<api::AppPasswordInfo>& out) noexcept {
    try {
        if (table_->list_app_passwords == nullptr) {
            return missing();
        }
        Collector c;
        const postern_sink sink = c.sink();
        api::WriteAnswer a = writeAnswer(table_->list_app_passwords(backend_, view(user), &sink), c);
        if (a.status == api::WriteStatus::Ok) {
            requireAppPassword = c.requireAppPassword;
            out = std::move(c.appPasswords);
        }
        return a;
    } catch (...) {
        return {api::WriteStatus::Failed, "unexpected error"};
    }
}

api::WriteAnswer PluginBackend::addUser(const api::NewUser& u) noexcept {
    try {
        if (table_->add_user == nullptr) {
            return missing();
        }
        std::vector<postern_str> senders;
        for (const auto& s : u.senders) {
            senders.push_back(view(s));
        }
        const postern_new_user n{view(u.address), view(u.passwordHash), u.enabled ? 1 : 0, view(u.mailbox),
                                 u.quotaBytes,    senders.data(),       senders.size()};
        Collector c;
        const postern_sink sink = c.sink();
        return writeAnswer(table_->add_user(backend_, &n, &sink), c);
    } catch (...) {
        return {api::WriteStatus::Failed, "unexpected error"};
    }
}

api::WriteAnswer PluginBackend::listUsers(const std::string& domain, std::vector<api::UserInfo>& out) noexcept {
    try {
        if (table_->list_users == nullptr) {
            return missing();
        }
        Collector c;
        const postern_sink sink = c.sink();
        api::WriteAnswer a = writeAnswer(table_->list_users(backend_, view(domain), &sink), c);
        if (a.status == api::WriteStatus::Ok) {
            out = std::move(c.users);
        }
        return a;
    } catch (...) {
        return {api::WriteStatus::Failed, "unexpected error"};
    }
}

api::WriteAnswer PluginBackend::showUser(const std::string& address, api::UserInfo& out) noexcept {
    try {
        if (table_->show_user == nullptr) {
            return missing();
        }
        Collector c;
        const postern_sink sink = c.sink();
        api::WriteAnswer a = writeAnswer(table_->show_user(backend_, view(address), &sink), c);
        if (a.status == api::WriteStatus::Ok) {
            if (c.users.size() != 1) {
                return {api::WriteStatus::Failed, "plugin returned " + std::to_string(c.users.size()) + " accounts"};
            }
            out = std::move(c.users.front());
        }
        return a;
    } catch (...) {
        return {api::WriteStatus::Failed, "unexpected error"};
    }
}

}  // namespace postern::auth
