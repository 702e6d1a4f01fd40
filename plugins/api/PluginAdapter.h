// Plugin side of the C boundary: turns a C++ api::Backend into the postern_plugin_table of
// postern_plugin.h. Header-only, compiled into each plugin (never into the host). Every entry
// point catches everything: no exception leaves the plugin. Answers are handed to the host's
// sink as views of the plugin's own strings, valid for the duration of the callback.
//
// Use in exactly one .cpp of a plugin:
//   POSTERN_PLUGIN_EXPORT("passwd-file", "1.0.0", makeBackend)
// where makeBackend is std::unique_ptr<api::Backend>(const std::map<std::string, std::string>&
// config, std::uint32_t flags) and may throw (its what() becomes create()'s error).
#pragma once

#include "api/PluginApi.h"
#include "api/postern_plugin.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace postern::plugins::api::adapter {

inline postern_str view(const std::string& s) { return {s.data(), s.size()}; }
inline std::string str(postern_str s) { return s.data == nullptr ? std::string() : std::string(s.data, s.len); }

inline std::vector<postern_str> views(const std::vector<std::string>& v) {
    std::vector<postern_str> out;
    out.reserve(v.size());
    for (const auto& s : v) {
        out.push_back(view(s));
    }
    return out;
}

inline std::vector<std::string> strings(const postern_str* p, std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; p != nullptr && i < n; ++i) {
        out.push_back(str(p[i]));
    }
    return out;
}

inline Backend* backendOf(postern_backend* b) { return reinterpret_cast<Backend*>(b); }

inline postern_status readStatus(Status s) {
    switch (s) {
    case Status::Ok: return POSTERN_OK;
    case Status::BadCredentials: return POSTERN_BAD_CREDENTIALS;
    case Status::UnknownUser: return POSTERN_UNKNOWN_USER;
    case Status::Disabled: return POSTERN_DISABLED;
    case Status::NotFound: return POSTERN_NOT_FOUND;
    case Status::TempFail: return POSTERN_TEMPFAIL;
    }
    return POSTERN_TEMPFAIL;
}

inline postern_status writeStatus(WriteStatus s) {
    switch (s) {
    case WriteStatus::Ok: return POSTERN_OK;
    case WriteStatus::UnknownUser: return POSTERN_UNKNOWN_USER;
    case WriteStatus::UnknownDomain: return POSTERN_UNKNOWN_DOMAIN;
    case WriteStatus::Exists: return POSTERN_EXISTS;
    case WriteStatus::Invalid: return POSTERN_INVALID;
    case WriteStatus::Unsupported: return POSTERN_UNSUPPORTED;
    case WriteStatus::TempFail: return POSTERN_TEMPFAIL;
    case WriteStatus::IoError: return POSTERN_IO_ERROR;
    case WriteStatus::ConfigError: return POSTERN_CONFIG_ERROR;
    case WriteStatus::Failed: return POSTERN_FAILED;
    case WriteStatus::Changed: return POSTERN_CHANGED;
    }
    return POSTERN_FAILED;
}

inline void message(const postern_sink* sink, const std::string& text) {
    if (sink != nullptr && sink->message != nullptr && !text.empty()) {
        sink->message(sink->ctx, view(text));
    }
}

// A UserRecord as C views; the object must outlive the postern_user_record it fills.
struct RecordViews {
    std::vector<postern_str> senders;
    std::vector<postern_kv> extra;

    postern_user_record fill(const UserRecord& r) {
        senders = views(r.senderAddresses);
        extra.clear();
        for (const auto& [k, v] : r.extra) {
            extra.push_back({view(k), view(v)});
        }
        return {view(r.user), view(r.passwordHash), senders.data(), senders.size(), view(r.mailbox),
                extra.data(), extra.size()};
    }
};

inline void deliverUser(const postern_sink* sink, const UserInfo& u) {
    if (sink == nullptr || sink->user == nullptr) {
        return;
    }
    auto senders = views(u.senders);
    auto aliases = views(u.aliases);
    postern_user_info info{view(u.address), u.enabled ? 1 : 0, view(u.scheme), view(u.mailbox), u.quotaBytes,
                           senders.data(), senders.size(), aliases.data(), aliases.size(), view(u.created),
                           view(u.updated)};
    sink->user(sink->ctx, &info);
}

// Runs a write and reports its detail; everything thrown becomes FAILED.
template <typename F>
postern_status guardedWrite(const postern_sink* sink, F&& f) noexcept {
    try {
        WriteAnswer a = f();
        if (a.status != WriteStatus::Ok) {
            message(sink, a.detail);
        }
        return writeStatus(a.status);
    } catch (const std::exception& e) {
        try {
            message(sink, e.what());
        } catch (...) {
        }
    } catch (...) {
    }
    return POSTERN_FAILED;
}

// Runs a read entry point; everything thrown becomes TEMPFAIL (the host answers "try later").
template <typename F>
postern_status guarded(F&& f) noexcept {
    try {
        return f();
    } catch (...) {
        return POSTERN_TEMPFAIL;
    }
}

// For a plugin's factory: runs make(), and an exception comes back as
// std::runtime_error("<name>: <what>") (create() hands that text to the host).
template <typename Make>
std::unique_ptr<Backend> namedErrors(const char* name, Make&& make) {
    try {
        return make();
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string(name) + ": " + e.what());
    }
}

template <auto Factory>
struct Table {
    static postern_backend* create(const postern_kv* config, size_t count, uint32_t flags, char* error,
                                   size_t errorSize) noexcept {
        auto fail = [&](const char* text) {
            if (error != nullptr && errorSize > 0) {
                std::size_t n = std::strlen(text);
                n = n < errorSize - 1 ? n : errorSize - 1;
                std::memcpy(error, text, n);
                error[n] = '\0';
            }
        };
        try {
            std::map<std::string, std::string> map;
            for (std::size_t i = 0; config != nullptr && i < count; ++i) {
                map[str(config[i].key)] = str(config[i].value);
            }
            std::unique_ptr<Backend> b = Factory(map, flags);
            if (!b) {
                fail("create failed");
                return nullptr;
            }
            return reinterpret_cast<postern_backend*>(b.release());
        } catch (const std::exception& e) {
            fail(e.what());
        } catch (...) {
            fail("unexpected error");
        }
        return nullptr;
    }

    static void destroy(postern_backend* b) noexcept {
        delete backendOf(b);  // ~Backend is virtual; implementations do not throw from it
    }

    static postern_status authenticate(postern_backend* b, postern_str user, postern_str password,
                                       postern_str service, postern_str clientIp, const postern_sink* sink) noexcept {
        return guarded([&] {
            std::string pw = str(password);
            AuthAnswer a = backendOf(b)->authenticate(str(user), pw, str(service), str(clientIp));
            std::fill(pw.begin(), pw.end(), '\0');
            if (sink != nullptr && sink->auth != nullptr) {
                RecordViews rv;
                // A backend that hands out its hash names the scheme too (the host reads it
                // from the hash anyway; a verifying backend sets storedScheme itself).
                const std::string scheme = !a.storedScheme.empty()        ? a.storedScheme
                                           : a.record.passwordHash.empty() ? std::string()
                                                                           : schemeOfHash(a.record.passwordHash);
                postern_auth_answer out{readStatus(a.status), a.verified ? 1 : 0, rv.fill(a.record), view(a.detail),
                                        view(a.refusal), view(a.appPasswordId), a.appPasswordExpires,
                                        a.appPasswordIpBound ? 1 : 0, a.appPasswordLastUsed,
                                        view(a.appPasswordLastIp), view(scheme)};
                sink->auth(sink->ctx, &out);
            }
            return readStatus(a.status);
        });
    }

    static postern_status lookup(postern_backend* b, postern_str address, const postern_sink* sink) noexcept {
        return guarded([&] {
            LookupAnswer a = backendOf(b)->lookup(str(address));
            if (sink != nullptr && sink->lookup != nullptr) {
                RecordViews rv;
                auto dests = views(a.aliasDestinations);
                postern_lookup_answer out{readStatus(a.status), a.isMailbox ? 1 : 0, rv.fill(a.record), dests.data(),
                                          dests.size(), view(a.detail)};
                sink->lookup(sink->ctx, &out);
            }
            return readStatus(a.status);
        });
    }

    static postern_status hasDomain(postern_backend* b, postern_str domain) noexcept {
        return guarded([&] { return readStatus(backendOf(b)->hasDomain(str(domain))); });
    }

    static postern_status probe(postern_backend* b, const postern_sink* sink) noexcept {
        return guarded([&] {
            ProbeAnswer a = backendOf(b)->probe();
            if (a.status != Status::Ok) {
                message(sink, a.detail);
            }
            return readStatus(a.status);
        });
    }

    static postern_status setPassword(postern_backend* b, postern_str user, postern_str hash,
                                      const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->setPassword(str(user), str(hash)); });
    }
    static postern_status replacePassword(postern_backend* b, postern_str user, postern_str oldHash,
                                          postern_str newHash, const postern_sink* sink) noexcept {
        return guardedWrite(sink,
                            [&] { return backendOf(b)->replacePassword(str(user), str(oldHash), str(newHash)); });
    }
    static postern_status checkNewUser(postern_backend* b, postern_str address, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->checkNewUser(str(address)); });
    }
    static postern_status addUser(postern_backend* b, const postern_new_user* u, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] {
            if (u == nullptr) {
                return WriteAnswer{WriteStatus::Invalid, "no user"};
            }
            NewUser n;
            n.address = str(u->address);
            n.passwordHash = str(u->password_hash);
            n.enabled = u->enabled != 0;
            n.mailbox = str(u->mailbox);
            n.quotaBytes = u->quota_bytes;
            n.senders = strings(u->senders, u->sender_count);
            return backendOf(b)->addUser(n);
        });
    }
    static postern_status setEnabled(postern_backend* b, postern_str user, int32_t enabled,
                                     const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->setEnabled(str(user), enabled != 0); });
    }
    static postern_status removeUser(postern_backend* b, postern_str user, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->removeUser(str(user)); });
    }
    static postern_status listUsers(postern_backend* b, postern_str domain, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] {
            std::vector<UserInfo> users;
            WriteAnswer a = backendOf(b)->listUsers(str(domain), users);
            if (a.status == WriteStatus::Ok) {
                for (const auto& u : users) {
                    deliverUser(sink, u);
                }
            }
            return a;
        });
    }
    static postern_status showUser(postern_backend* b, postern_str address, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] {
            UserInfo u;
            WriteAnswer a = backendOf(b)->showUser(str(address), u);
            if (a.status == WriteStatus::Ok) {
                deliverUser(sink, u);
            }
            return a;
        });
    }

    // ABI 4: app passwords.
    static postern_status addAppPassword(postern_backend* b, const postern_new_app_password* p,
                                         const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] {
            if (p == nullptr) {
                return WriteAnswer{WriteStatus::Invalid, "no app password"};
            }
            NewAppPassword n;
            n.user = str(p->user);
            n.id = str(p->id);
            n.label = str(p->label);
            n.passwordHash = str(p->password_hash);
            n.scopes = str(p->scopes);
            n.expires = p->expires;
            n.networks = str(p->networks);
            n.created = p->created;
            return backendOf(b)->addAppPassword(n);
        });
    }
    static postern_status listAppPasswords(postern_backend* b, postern_str user, const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] {
            std::vector<AppPasswordInfo> list;
            bool require = false;
            WriteAnswer a = backendOf(b)->listAppPasswords(str(user), require, list);
            if (a.status == WriteStatus::Ok && sink != nullptr) {
                if (sink->require_app_password != nullptr) {
                    sink->require_app_password(sink->ctx, require ? 1 : 0);
                }
                for (const auto& i : list) {
                    if (sink->app_password == nullptr) {
                        break;
                    }
                    postern_app_password_info info{view(i.id), view(i.label), view(i.scopes), i.expires,
                                                   view(i.networks), i.created, i.lastUsed, view(i.lastIp),
                                                   i.revoked};
                    sink->app_password(sink->ctx, &info);
                }
            }
            return a;
        });
    }
    static postern_status revokeAppPassword(postern_backend* b, postern_str user, postern_str id,
                                            const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->revokeAppPassword(str(user), str(id)); });
    }
    static postern_status setRequireAppPassword(postern_backend* b, postern_str user, int32_t on,
                                                const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->setRequireAppPassword(str(user), on != 0); });
    }
    static postern_status touchAppPassword(postern_backend* b, postern_str user, postern_str id, postern_str ip,
                                           const postern_sink* sink) noexcept {
        return guardedWrite(sink, [&] { return backendOf(b)->touchAppPassword(str(user), str(id), str(ip)); });
    }

    static const postern_plugin_table* make(const char* name, const char* version) noexcept {
        static const postern_plugin_table t{POSTERN_PLUGIN_ABI_VERSION, sizeof(postern_plugin_table), name, version,
                                            &create, &destroy, &authenticate, &lookup, &hasDomain, &probe,
                                            &setPassword, &checkNewUser, &addUser, &setEnabled, &removeUser,
                                            &listUsers, &showUser,
                                            // ABI 4: app passwords
                                            &addAppPassword, &listAppPasswords, &revokeAppPassword,
                                            &setRequireAppPassword, &touchAppPassword,
                                            // optional, appended later
                                            &replacePassword};
        return &t;
    }
};

}  // namespace postern::plugins::api::adapter

// The two exported symbols (C linkage, default visibility). name and version: string literals.
#define POSTERN_PLUGIN_EXPORT(name, version, factory)                                                  \
    extern "C" __attribute__((visibility("default"))) const uint32_t postern_plugin_abi_version =     \
        POSTERN_PLUGIN_ABI_VERSION;                                                                    \
    extern "C" __attribute__((visibility("default"))) const postern_plugin_table* postern_plugin_entry( \
        void) {                                                                                        \
        return ::postern::plugins::api::adapter::Table<&factory>::make(name, version);                 \
    }
