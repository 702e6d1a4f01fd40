// Configuration of one LDAP backend instance, validated once at start-up.
#include "LdapConfig.h"

#include "core/Duration.h"
#include "core/Utf8.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>

namespace postern::plugins::ldap {

namespace {

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) {
        return {};
    }
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

bool parseBool(const std::string& key, const std::string& v) {
    const std::string l = core::asciiLower(v);
    if (l == "yes" || l == "true" || l == "on" || l == "1") {
        return true;
    }
    if (l == "no" || l == "false" || l == "off" || l == "0") {
        return false;
    }
    throw std::invalid_argument("invalid value '" + v + "' for " + key + " (use yes or no)");
}

// An attribute description: a name or OID, no filter or DN syntax in it.
std::string attributeName(const std::string& key, const std::string& v) {
    if (v.empty() || !std::all_of(v.begin(), v.end(), [](unsigned char c) {
            return std::isalnum(c) != 0 || c == '-' || c == '.' || c == ';';
        })) {
        throw std::invalid_argument("invalid attribute name '" + v + "' for " + key);
    }
    return v;
}

const std::set<std::string>& knownKeys() {
    static const std::set<std::string> k{
        "uris", "mode", "bind_dn", "bind_password_file", "base", "user_filter", "dn_template",
        "recipient_filter", "alias_filter", "alias_attribute", "mail_attributes", "user_attribute",
        "mailbox_attribute", "disabled_filter", "disabled_attribute", "disabled_value", "local_domains",
        "domain_filter", "starttls", "ca_file", "tls_require_cert", "network_timeout", "bind_timeout",
        "search_timeout", "pool_size", "probe_interval", "referrals", "keepalive_idle", "keepalive_interval",
        "keepalive_probes"};
    return k;
}

int parseInt(const std::string& key, const std::string& value, int min, int max) {
    std::size_t used = 0;
    int n = 0;
    try {
        n = std::stoi(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || n < min || n > max) {
        throw std::invalid_argument("invalid value '" + value + "' for " + key + " (" + std::to_string(min) + ".." +
                                    std::to_string(max) + ")");
    }
    return n;
}

}  // namespace

std::chrono::milliseconds parseLdapDuration(const std::string& key, const std::string& value) {
    std::chrono::milliseconds d;
    try {
        d = core::parseDuration(value);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(key + ": " + e.what());
    }
    // A timeout past a day is a typo; it would also overflow deadlines (now + timeout).
    if (d > std::chrono::hours(24)) throw std::invalid_argument(key + ": at most 1d, got '" + value + "'");
    return d;
}

std::vector<std::string> splitList(const std::string& value) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : value + " ") {
        if (c == ',' || c == ' ' || c == '\t') {
            if (!cur.empty()) {
                out.push_back(cur);
            }
            cur.clear();
        } else {
            cur += c;
        }
    }
    return out;
}

std::string readSecretFile(const std::string& key, const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        throw std::invalid_argument(key + ": cannot open '" + path + "': " + std::strerror(errno));
    }
    struct stat st {};
    std::string text;
    std::string problem;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        problem = "not a regular file";
    } else if ((st.st_mode & 077) != 0) {
        // A service password others can read is a leaked password: refuse to start rather
        // than run with it (chmod 600, owned by the user posternd runs as).
        problem = "is group/world-accessible (mode " + std::to_string((st.st_mode >> 6) & 7) +
                  std::to_string((st.st_mode >> 3) & 7) + std::to_string(st.st_mode & 7) + "; use chmod 600)";
    } else {
        char buf[4096];
        for (;;) {
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                problem = std::string("cannot read: ") + std::strerror(errno);
                break;
            }
            if (n == 0 || text.size() > 65536) {
                break;
            }
            text.append(buf, static_cast<std::size_t>(n));
        }
    }
    ::close(fd);
    if (!problem.empty()) {
        throw std::invalid_argument(key + ": '" + path + "' " + problem);
    }
    const auto eol = text.find_first_of("\r\n");
    if (eol != std::string::npos) {
        text.resize(eol);
    }
    if (text.empty()) {
        throw std::invalid_argument(key + ": '" + path + "' is empty");
    }
    return text;
}

LdapConfig LdapConfig::fromMap(const std::map<std::string, std::string>& raw) {
    for (const auto& [key, value] : raw) {
        if (knownKeys().count(key) == 0) {
            std::string known;
            for (const auto& k : knownKeys()) {
                known += (known.empty() ? "" : ", ") + k;
            }
            throw std::invalid_argument("unknown config key '" + key + "' (known: " + known + ")");
        }
    }
    auto get = [&](const std::string& key, const std::string& def = {}) {
        auto it = raw.find(key);
        return it == raw.end() ? def : trim(it->second);
    };
    using Kind = LdapTemplate::Kind;

    LdapConfig c;
    c.uris = splitList(get("uris"));
    if (c.uris.empty()) {
        throw std::invalid_argument("config key 'uris' is required (e.g. ldap://ldap1.example.net:389)");
    }
    c.startTls = parseBool("starttls", get("starttls", "no"));
    for (const auto& u : c.uris) {
        const std::string l = core::asciiLower(u);
        const bool isLdaps = l.rfind("ldaps://", 0) == 0;
        if (l.rfind("ldap://", 0) != 0 && !isLdaps) {
            throw std::invalid_argument("uris: '" + u + "' is not an ldap:// or ldaps:// URI");
        }
        if (isLdaps && c.startTls) {
            throw std::invalid_argument("uris: '" + u + "' is ldaps:// but starttls = yes (use one or the other)");
        }
    }

    const std::string mode = core::asciiLower(get("mode", "search"));
    if (mode == "search") {
        c.mode = LdapMode::Search;
    } else if (mode == "bind") {
        c.mode = LdapMode::Bind;
    } else {
        throw std::invalid_argument("invalid value '" + mode + "' for mode (use search or bind)");
    }

    c.bindDn = get("bind_dn");
    const std::string passwordFile = get("bind_password_file");
    if (!c.bindDn.empty() && passwordFile.empty()) {
        throw std::invalid_argument("bind_dn is set but bind_password_file is not");
    }
    if (c.bindDn.empty() && !passwordFile.empty()) {
        throw std::invalid_argument("bind_password_file is set but bind_dn is not");
    }
    if (!passwordFile.empty()) {
        c.bindPassword = readSecretFile("bind_password_file", passwordFile);
    }

    c.base = get("base");
    if (c.base.empty()) {
        throw std::invalid_argument("config key 'base' is required (search base, e.g. ou=people,dc=example,dc=test)");
    }
    c.userFilter = LdapTemplate::parse("user_filter", get("user_filter", "(&(objectClass=inetOrgPerson)(mail=%u))"),
                                       Kind::Filter);
    if (c.mode == LdapMode::Bind) {
        if (get("dn_template").empty()) {
            throw std::invalid_argument("mode = bind needs dn_template (e.g. uid=%n,ou=people,dc=example,dc=test)");
        }
        c.dnTemplate = LdapTemplate::parse("dn_template", get("dn_template"), Kind::Dn);
    } else if (!get("dn_template").empty()) {
        throw std::invalid_argument("dn_template is only used with mode = bind");
    }
    c.recipientFilter = LdapTemplate::parse(
        "recipient_filter", get("recipient_filter", "(|(mail=%u)(mailAlternateAddress=%u))"), Kind::Filter);
    if (!get("alias_filter").empty()) {
        c.aliasFilter = LdapTemplate::parse("alias_filter", get("alias_filter"), Kind::Filter);
    }
    c.aliasAttribute = attributeName("alias_attribute", get("alias_attribute", "mailForwardingAddress"));
    if (raw.count("mail_attributes") != 0) {
        c.mailAttributes.clear();
        for (const auto& a : splitList(get("mail_attributes"))) {
            c.mailAttributes.push_back(attributeName("mail_attributes", a));
        }
    }
    if (!get("user_attribute").empty()) {
        c.userAttribute = attributeName("user_attribute", get("user_attribute"));
    }
    if (!get("mailbox_attribute").empty()) {
        c.mailboxAttribute = attributeName("mailbox_attribute", get("mailbox_attribute"));
    }
    if (!get("disabled_filter").empty()) {
        c.disabledFilter = LdapTemplate::parse("disabled_filter", get("disabled_filter"), Kind::Filter);
        // Applied to the user's own entry (scope base): a placeholder would be sent as it is,
        // match nothing, and let every disabled account log in.
        if (c.disabledFilter.hasPlaceholders())
            throw std::invalid_argument(
                "disabled_filter is matched against the user's own entry: it takes no %u, %n or %d");
    }
    if (get("disabled_attribute").empty() != get("disabled_value").empty()) {
        throw std::invalid_argument("disabled_attribute and disabled_value must be set together");
    }
    if (!get("disabled_attribute").empty()) {
        c.disabledAttribute = attributeName("disabled_attribute", get("disabled_attribute"));
        c.disabledValue = get("disabled_value");
    }
    for (auto d : splitList(get("local_domains"))) {
        d = core::asciiLower(d);
        while (!d.empty() && d.back() == '.') {
            d.pop_back();
        }
        if (!d.empty()) {
            c.localDomains.push_back(d);
        }
    }
    if (!get("domain_filter").empty()) {
        c.domainFilter = LdapTemplate::parse("domain_filter", get("domain_filter"), Kind::Filter);
    }

    c.caFile = get("ca_file");
    if (!c.caFile.empty() && ::access(c.caFile.c_str(), R_OK) != 0) {
        throw std::invalid_argument("ca_file: cannot read '" + c.caFile + "': " + std::strerror(errno));
    }
    const std::string req = core::asciiLower(get("tls_require_cert", "demand"));
    if (req == "demand") {
        c.tlsRequireCert = TlsRequireCert::Demand;
    } else if (req == "allow") {
        c.tlsRequireCert = TlsRequireCert::Allow;
    } else if (req == "never") {
        c.tlsRequireCert = TlsRequireCert::Never;
    } else {
        throw std::invalid_argument("invalid value '" + req + "' for tls_require_cert (use demand, allow or never)");
    }

    c.networkTimeout = parseLdapDuration("network_timeout", get("network_timeout", "5s"));
    c.bindTimeout = parseLdapDuration("bind_timeout", get("bind_timeout", "5s"));
    c.searchTimeout = parseLdapDuration("search_timeout", get("search_timeout", "5s"));
    c.probeInterval = parseLdapDuration("probe_interval", get("probe_interval", "5s"));
    for (auto [key, value] : {std::pair{"network_timeout", c.networkTimeout}, std::pair{"bind_timeout", c.bindTimeout},
                              std::pair{"search_timeout", c.searchTimeout}, std::pair{"probe_interval", c.probeInterval}}) {
        if (value.count() == 0) {
            throw std::invalid_argument(std::string(key) + " must be greater than 0");
        }
    }
    c.poolSize = parseInt("pool_size", get("pool_size", "4"), 1, 256);
    // TCP keepalive (whole seconds: the socket options count seconds).
    c.keepaliveIdle = parseLdapDuration("keepalive_idle", get("keepalive_idle", "60s"));
    c.keepaliveInterval = parseLdapDuration("keepalive_interval", get("keepalive_interval", "10s"));
    for (auto [key, value] : {std::pair{"keepalive_idle", c.keepaliveIdle}, std::pair{"keepalive_interval", c.keepaliveInterval}}) {
        if (value.count() < 1000 || value.count() % 1000 != 0) {
            throw std::invalid_argument(std::string(key) + " must be a whole number of seconds, at least 1s");
        }
    }
    c.keepaliveProbes = parseInt("keepalive_probes", get("keepalive_probes", "3"), 1, 100);
    c.referrals = parseBool("referrals", get("referrals", "no"));
    return c;
}

}  // namespace postern::plugins::ldap
