// LDAP auth backend: search-then-bind or direct bind, attributes, recipient/alias/domain
// lookups over the fail-over pool.
#include "LdapBackend.h"
#include "core/Utf8.h"

#include <ldap.h>

#include <algorithm>
#include <cctype>

namespace postern::plugins::ldap {

namespace {

// In a catch block: the answer's detail for what was thrown.
std::string thrownDetail() {
    try {
        throw;
    } catch (const std::exception& e) {
        return std::string("ldap: ") + e.what();
    } catch (...) {
        return "ldap: unexpected error";
    }
}

void pushUnique(std::vector<std::string>& v, const std::string& s) {
    if (!s.empty() && std::find(v.begin(), v.end(), s) == v.end()) {
        v.push_back(s);
    }
}

// A mailbox location from the directory is relative to the mail root: refuse anything
// that could leave it.
bool isSafeMailbox(const std::string& m) {
    if (m.empty() || m.front() == '/' || m.find('\0') != std::string::npos) {
        return false;
    }
    std::size_t start = 0;
    while (start <= m.size()) {
        const auto slash = m.find('/', start);
        const std::string seg = m.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (seg == "..") {
            return false;
        }
        if (slash == std::string::npos) {
            break;
        }
        start = slash + 1;
    }
    return true;
}

}  // namespace

// What one attempt of authenticate() found; reset at the start of every attempt because
// the pool may run the operation again on another server.
struct LdapBackend::Account {
    int matches = 0;
    bool ambiguous = false;
    LdapEntry entry;
    bool entryRead = false;
    bool disabled = false;
    bool userBindDone = false;
    LdapResult userBind;
    LdapResult failure;  // a non-server failure that makes the answer TempFail
};

LdapBackend::LdapBackend(LdapConfig config) : config_(std::move(config)) {
    for (const auto& a : config_.mailAttributes) {
        pushUnique(entryAttributes_, a);
    }
    // The attributes user_filter compares with the whole login ("(userPrincipalName=%u)"):
    // their values name the entry in any domain (hasAddressInDomain).
    const std::string& f = config_.userFilter.text();
    for (std::size_t i = f.find("=%u"); i != std::string::npos; i = f.find("=%u", i + 3)) {
        std::size_t end = i;
        if (end > 0 && (f[end - 1] == '~' || f[end - 1] == '<' || f[end - 1] == '>')) --end;
        std::size_t start = end;
        while (start > 0 && (std::isalnum(static_cast<unsigned char>(f[start - 1])) || f[start - 1] == '-' ||
                             f[start - 1] == ';' || f[start - 1] == '.'))
            --start;
        if (start < end) {
            pushUnique(loginAttributes_, f.substr(start, end - start));
            pushUnique(entryAttributes_, f.substr(start, end - start));
        }
    }
    pushUnique(entryAttributes_, config_.userAttribute);
    pushUnique(entryAttributes_, config_.mailboxAttribute);
    pushUnique(entryAttributes_, config_.disabledAttribute);
    pool_ = std::make_unique<LdapServerPool>(config_);
}

LdapBackend::~LdapBackend() = default;

// Searches run as the service account if one is configured, else anonymously; a
// connection last bound as a user is re-bound first (its rights are not ours).
LdapResult LdapBackend::useLookupIdentity(LdapConnection& conn) const {
    if (!config_.bindDn.empty()) {
        if (conn.identity() == LdapConnection::Identity::Service) {
            return {};
        }
        LdapResult r = conn.bind(config_.bindDn, config_.bindPassword, LdapConnection::Identity::Service);
        if (!r.ok() && !r.isServerFailure()) {
            // Never let the service account's invalidCredentials look like the user's.
            r.text = "service bind as " + config_.bindDn + " failed: " + r.describe();
            r.code = LDAP_OTHER;
        }
        return r;
    }
    if (conn.identity() == LdapConnection::Identity::Anonymous) {
        return {};
    }
    LdapResult r = conn.bind("", "", LdapConnection::Identity::Anonymous);
    if (!r.ok() && !r.isServerFailure()) {
        r.text = "anonymous re-bind failed: " + r.describe();
        r.code = LDAP_OTHER;
    }
    return r;
}

bool LdapBackend::isDisabledByAttribute(const LdapEntry& entry) const {
    if (config_.disabledAttribute.empty()) {
        return false;
    }
    if (const auto* values = entry.values(config_.disabledAttribute)) {
        const std::string want = core::asciiLower(config_.disabledValue);
        return std::any_of(values->begin(), values->end(), [&](const std::string& v) { return core::asciiLower(v) == want; });
    }
    return false;
}

// disabled_filter is evaluated by the server against this one entry (scope base), so
// bit tests such as AD's userAccountControl matching rule work as written.
LdapResult LdapBackend::checkDisabled(LdapConnection& conn, const LdapEntry& entry, bool& disabled) const {
    disabled = isDisabledByAttribute(entry);
    if (disabled || config_.disabledFilter.empty()) {
        return {};
    }
    std::vector<LdapEntry> found;
    // Expanded only for its "%%" (it has no placeholders: LdapConfig refuses them).
    LdapResult r = conn.search(entry.dn, LDAP_SCOPE_BASE, config_.disabledFilter.expand({}), {}, 1, found);
    if (!r.ok()) {
        return r;
    }
    disabled = !found.empty();
    return {};
}

bool LdapBackend::hasAddressInDomain(const LdapEntry& entry, const std::string& login,
                                     const std::string& domain) const {
    // Named by the whole login in an attribute the filter compares with it (a UPN in another
    // domain than the mail addresses: review finding), or by an address in its domain.
    for (const auto& attribute : loginAttributes_) {
        if (const auto* values = entry.values(attribute)) {
            for (const auto& v : *values)
                if (core::asciiLower(v) == core::asciiLower(login)) return true;
        }
    }
    const std::string want = core::asciiLower(domain);
    bool any = false;
    for (const auto& attribute : config_.mailAttributes) {
        if (const auto* values = entry.values(attribute)) {
            for (const auto& v : *values) {
                any = true;
                const auto at = v.rfind('@');
                if (at != std::string::npos && core::asciiLower(v.substr(at + 1)) == want) return true;
            }
        }
    }
    return !any;  // no address at all: recordOf decides (user_attribute, or a temporary failure)
}

api::UserRecord LdapBackend::recordOf(const LdapEntry& entry, const std::string& name, const LdapTemplate& matched,
                                      std::string& problem) const {
    api::UserRecord rec;
    for (const auto& attribute : config_.mailAttributes) {
        if (const auto* values = entry.values(attribute)) {
            for (const auto& v : *values) {
                pushUnique(rec.senderAddresses, core::asciiLower(v));
            }
        }
    }
    // user_attribute and mailbox_attribute name one account and one mailbox: with two values
    // LDAP does not say which comes first (a server may sort them, or return them in another
    // order after a change), so the account or its mailbox could move between logins. Like two
    // entries for one login, that is the directory's ambiguity to fix: a temporary failure.
    auto single = [&](const std::string& attribute) -> const std::string* {
        const auto* values = attribute.empty() ? nullptr : entry.values(attribute);
        if (values == nullptr || values->empty()) return nullptr;
        if (values->size() > 1) {
            problem = "ldap: entry " + entry.dn + " has " + std::to_string(values->size()) + " values of " +
                      attribute + " (it must name one account and one mailbox)";
            return nullptr;
        }
        return &values->front();
    };
    if (const std::string* value = single(config_.userAttribute)) rec.user = core::asciiLower(*value);
    if (!problem.empty()) return rec;
    if (rec.user.empty() && !rec.senderAddresses.empty()) {
        // The primary address names the account, so a login and a RCPT to any of the
        // user's addresses land in the same mailbox.
        rec.user = rec.senderAddresses.front();
    } else if (rec.user.empty()) {
        if (!matched.pinsDomain()) {
            problem = "ldap: entry " + entry.dn + " has no mail address and " + matched.text() +
                      " does not match the domain of " + name + " (set user_attribute)";
            return rec;
        }
        rec.user = core::asciiLower(name);
    }
    if (const std::string* value = single(config_.mailboxAttribute)) {
        if (isSafeMailbox(*value)) {
            rec.mailbox = *value;
        } else {
            problem = "unsafe " + config_.mailboxAttribute + " value in " + entry.dn;
        }
    }
    rec.extra["dn"] = entry.dn;
    return rec;
}

api::AuthAnswer LdapBackend::authenticate(const std::string& user, const std::string& password,
                                          const std::string&, const std::string&) noexcept {
    api::AuthAnswer answer;  // TempFail until one explicit path below says otherwise
    answer.verified = true;
    try {
        // RFC 4513 5.1.2: a simple bind with a name and an empty password is an
        // "unauthenticated bind" that many servers answer with success. Never send one.
        if (password.empty()) {
            answer.status = api::Status::BadCredentials;
            answer.detail = "empty password refused";
            return answer;
        }
        if (user.empty()) {
            answer.status = api::Status::UnknownUser;
            return answer;
        }
        const NameParts parts = NameParts::split(user);
        Account acc;
        auto op = [&](LdapConnection& conn) -> LdapResult {
            acc = Account{};
            LdapResult r;
            if (config_.mode == LdapMode::Search) {
                if (r = useLookupIdentity(conn); !r.ok()) {
                    return r;
                }
                std::vector<LdapEntry> entries;
                r = conn.search(config_.base, LDAP_SCOPE_SUBTREE, config_.userFilter.expand(parts), entryAttributes_, 2,
                                entries);
                if (r.code == LDAP_SIZELIMIT_EXCEEDED || entries.size() > 1) {
                    acc.ambiguous = true;  // two accounts for one login: fail closed
                    acc.matches = static_cast<int>(entries.size());
                    return {};
                }
                if (!r.ok()) {
                    return r;
                }
                acc.matches = static_cast<int>(entries.size());
                if (entries.empty()) {
                    return {};
                }
                // A filter that matches the local part alone ("(uid=%n)") finds bob's entry for
                // bob@<any domain>: each spelling would be an account of its own for the
                // failed-login limits (review finding). Only the domains of the entry's own
                // addresses (or none) name it; another is no such user, before any bind.
                if (!config_.userFilter.pinsDomain() && !parts.domain.empty() &&
                    !hasAddressInDomain(entries.front(), parts.full, parts.domain)) {
                    acc.matches = 0;
                    return {};
                }
                acc.entry = std::move(entries.front());
                acc.entryRead = true;
                if (r = checkDisabled(conn, acc.entry, acc.disabled); !r.ok()) {
                    return r;
                }
                acc.userBind = conn.bind(acc.entry.dn, password, LdapConnection::Identity::User);
                acc.userBindDone = true;
                return acc.userBind.isServerFailure() ? acc.userBind : LdapResult{};
            }
            // Direct bind: the DN comes from the template, values escaped per RFC 4514.
            acc.entry.dn = config_.dnTemplate.expand(parts);
            acc.matches = 1;
            acc.userBind = conn.bind(acc.entry.dn, password, LdapConnection::Identity::User);
            acc.userBindDone = true;
            if (!acc.userBind.ok()) {
                return acc.userBind.isServerFailure() ? acc.userBind : LdapResult{};
            }
            // Read our own entry with the user's rights.
            std::vector<LdapEntry> entries;
            r = conn.search(acc.entry.dn, LDAP_SCOPE_BASE, "(objectClass=*)", entryAttributes_, 1, entries);
            if (r.ok() && entries.size() == 1) {
                acc.entry = std::move(entries.front());
                acc.entryRead = true;
                // As in search mode: "uid=%n,..." binds bob for bob@<any domain>; only the
                // domains of the entry's own addresses name it (the password was right, but
                // this spelling is not the account).
                if (!config_.dnTemplate.pinsDomain() && !parts.domain.empty() &&
                    !hasAddressInDomain(acc.entry, parts.full, parts.domain)) {
                    acc.matches = 0;
                    return {};
                }
            } else if (r.isServerFailure()) {
                return r;
            } else if (!config_.disabledFilter.empty() || !config_.disabledAttribute.empty()) {
                // We were told to check a disabled flag and cannot read it: fail closed.
                acc.failure = {r.ok() ? LDAP_NO_SUCH_OBJECT : r.code,
                               "cannot read own entry to check the disabled flag: " + r.describe()};
                return {};
            }
            // The disabled flag as the service account sees it: a directory may hide it from
            // its owner (an unreadable flag looks absent, and the account would log in).
            // Without a service account the user's own rights are all there is.
            if (!config_.bindDn.empty() && (!config_.disabledFilter.empty() || !config_.disabledAttribute.empty())) {
                if (r = useLookupIdentity(conn); !r.ok()) {
                    return r;
                }
                if (!config_.disabledAttribute.empty()) {
                    std::vector<LdapEntry> flag;
                    r = conn.search(acc.entry.dn, LDAP_SCOPE_BASE, "(objectClass=*)", {config_.disabledAttribute}, 1,
                                    flag);
                    if (r.isServerFailure()) {
                        return r;
                    }
                    if (!r.ok() || flag.size() != 1) {
                        acc.failure = {r.ok() ? LDAP_NO_SUCH_OBJECT : r.code,
                                       "the service account cannot read the entry to check the disabled flag: " +
                                           r.describe()};
                        return {};
                    }
                    std::erase_if(acc.entry.attributes, [&](const auto& a) { return core::asciiLower(a.first) == core::asciiLower(config_.disabledAttribute); });
                    for (auto& [name, values] : flag.front().attributes) acc.entry.attributes[name] = std::move(values);
                }
            }
            if (r = checkDisabled(conn, acc.entry, acc.disabled); !r.ok()) {
                return r;
            }
            return {};
        };
        std::string server;
        const LdapResult r = pool_->run(op, server);
        if (!r.ok()) {
            answer.detail = "ldap " + server + ": " + r.describe();
            return answer;
        }
        if (!acc.failure.ok()) {
            answer.detail = "ldap " + server + ": " + acc.failure.describe();
            return answer;
        }
        if (acc.ambiguous) {
            answer.detail = "ldap: user_filter matched more than one entry (ambiguous, refused)";
            return answer;
        }
        if (acc.matches == 0) {
            answer.status = api::Status::UnknownUser;
            return answer;
        }
        if (!acc.userBindDone) {
            answer.detail = "ldap: internal error (no bind)";
            return answer;
        }
        if (acc.userBind.isInvalidCredentials()) {
            answer.status = api::Status::BadCredentials;
            answer.detail = "invalid credentials for " + acc.entry.dn;
            return answer;
        }
        if (!acc.userBind.ok()) {
            // Anything but invalidCredentials is not evidence of a wrong password
            // (maddy's mistake was to say so): try later.
            answer.detail = "ldap " + server + ": user bind: " + acc.userBind.describe();
            return answer;
        }
        // Disabled first: a definite answer, whatever the entry lacks.
        if (acc.disabled) {
            answer.status = api::Status::Disabled;
            answer.detail = "account disabled in LDAP";
            return answer;
        }
        std::string problem;
        answer.record = recordOf(acc.entry, user,
                                 config_.mode == LdapMode::Bind ? config_.dnTemplate : config_.userFilter, problem);
        if (!problem.empty()) {
            answer.record = {};
            answer.detail = acc.entryRead ? problem
                                          : "ldap: cannot read own entry " + acc.entry.dn +
                                                " to learn its address (grant the user read access to it): " + problem;
            return answer;
        }
        answer.status = api::Status::Ok;
        answer.detail = "server=" + server;
    } catch (...) {
        answer = {};
        answer.verified = true;
        answer.detail = thrownDetail();
    }
    return answer;
}

api::LookupAnswer LdapBackend::lookup(const std::string& address) noexcept {
    api::LookupAnswer answer;  // TempFail
    try {
        if (address.empty()) {
            answer.status = api::Status::NotFound;
            return answer;
        }
        const NameParts parts = NameParts::split(core::asciiLower(address));
        std::vector<LdapEntry> mailboxes;
        bool ambiguous = false;
        bool disabled = false;
        std::vector<std::string> destinations;
        auto op = [&](LdapConnection& conn) -> LdapResult {
            mailboxes.clear();
            destinations.clear();
            ambiguous = false;
            disabled = false;
            LdapResult r = useLookupIdentity(conn);
            if (!r.ok()) {
                return r;
            }
            r = conn.search(config_.base, LDAP_SCOPE_SUBTREE, config_.recipientFilter.expand(parts), entryAttributes_, 2,
                            mailboxes);
            if (r.code == LDAP_SIZELIMIT_EXCEEDED || mailboxes.size() > 1) {
                ambiguous = true;
                return {};
            }
            if (!r.ok()) {
                return r;
            }
            if (mailboxes.size() == 1) {
                if (r = checkDisabled(conn, mailboxes.front(), disabled); !r.ok()) {
                    return r;
                }
            }
            if (!config_.aliasFilter.empty()) {
                std::vector<LdapEntry> aliases;
                r = conn.search(config_.base, LDAP_SCOPE_SUBTREE, config_.aliasFilter.expand(parts),
                                {config_.aliasAttribute}, 0, aliases);
                if (!r.ok()) {
                    return r;
                }
                for (const auto& a : aliases) {
                    if (const auto* values = a.values(config_.aliasAttribute)) {
                        for (const auto& v : *values) {
                            pushUnique(destinations, core::asciiLower(v));
                        }
                    }
                }
            }
            return {};
        };
        std::string server;
        const LdapResult r = pool_->run(op, server);
        if (!r.ok()) {
            answer.detail = "ldap " + server + ": " + r.describe();
            return answer;
        }
        if (ambiguous) {
            answer.detail = "ldap: recipient_filter matched more than one entry for " + address;
            return answer;
        }
        if (mailboxes.empty() && destinations.empty()) {
            answer.status = api::Status::NotFound;
            return answer;
        }
        if (!mailboxes.empty() && disabled && destinations.empty()) {
            answer.status = api::Status::Disabled;
            answer.detail = "account disabled in LDAP";
            return answer;
        }
        if (!mailboxes.empty() && !disabled) {
            std::string problem;
            answer.record = recordOf(mailboxes.front(), address, config_.recipientFilter, problem);
            if (!problem.empty()) {
                answer.record = {};
                answer.detail = problem;
                return answer;
            }
            answer.isMailbox = true;
        }
        answer.aliasDestinations = std::move(destinations);
        answer.status = api::Status::Ok;
    } catch (...) {
        answer = {};
        answer.detail = thrownDetail();
    }
    return answer;
}

api::Status LdapBackend::hasDomain(const std::string& domainIn) noexcept {
    try {
        std::string domain = core::asciiLower(domainIn);
        while (!domain.empty() && domain.back() == '.') {
            domain.pop_back();
        }
        if (domain.empty()) {
            return api::Status::NotFound;
        }
        if (std::find(config_.localDomains.begin(), config_.localDomains.end(), domain) != config_.localDomains.end()) {
            return api::Status::Ok;
        }
        if (config_.domainFilter.empty()) {
            return api::Status::NotFound;
        }
        NameParts parts;
        parts.full = domain;
        parts.local = domain;
        parts.domain = domain;
        bool found = false;
        auto op = [&](LdapConnection& conn) -> LdapResult {
            found = false;
            LdapResult r = useLookupIdentity(conn);
            if (!r.ok()) {
                return r;
            }
            std::vector<LdapEntry> entries;
            r = conn.search(config_.base, LDAP_SCOPE_SUBTREE, config_.domainFilter.expand(parts), {}, 1, entries);
            if (r.code == LDAP_SIZELIMIT_EXCEEDED || !entries.empty()) {
                found = true;
                return {};
            }
            return r;
        };
        std::string server;
        const LdapResult r = pool_->run(op, server);
        if (!r.ok()) {
            return api::Status::TempFail;
        }
        return found ? api::Status::Ok : api::Status::NotFound;
    } catch (...) {
        return api::Status::TempFail;
    }
}

api::ProbeAnswer LdapBackend::probe() noexcept {
    api::ProbeAnswer answer;  // TempFail
    try {
        auto op = [&](LdapConnection& conn) -> LdapResult {
            if (!config_.bindDn.empty()) {
                LdapResult r = conn.bind(config_.bindDn, config_.bindPassword, LdapConnection::Identity::Service);
                if (!r.ok() && !r.isServerFailure()) {
                    r.text = "service bind as " + config_.bindDn + " failed: " + r.describe();
                    r.code = LDAP_OTHER;
                }
                return r;
            }
            std::vector<LdapEntry> rootDse;
            LdapResult r = conn.search("", LDAP_SCOPE_BASE, "(objectClass=*)", {}, 1, rootDse);
            if (r.code == LDAP_NO_SUCH_OBJECT || r.code == LDAP_INSUFFICIENT_ACCESS) {
                return {};  // it answered: that is all readiness needs
            }
            return r;
        };
        std::string server;
        const LdapResult r = pool_->run(op, server);
        if (r.ok()) {
            answer.status = api::Status::Ok;
            answer.detail = "server=" + server;
        } else {
            answer.detail = (server.empty() ? std::string("ldap: ") : "ldap " + server + ": ") + r.describe();
        }
    } catch (...) {
        answer = {};
        answer.detail = thrownDetail();
    }
    return answer;
}

}  // namespace postern::plugins::ldap
