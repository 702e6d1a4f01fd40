// One parsed, immutable copy of a Dovecot-style passwd-file and its aliases file.
#include "PasswdFile.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <sstream>

namespace postern::plugins::passwdfile {

std::string toLower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    });
    return s;
}

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) {
        return {};
    }
    auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

std::vector<std::string> splitFields(const std::string& line) {
    std::vector<std::string> fields;
    std::size_t pos = 0;
    while (fields.size() < 7) {
        auto colon = line.find(':', pos);
        if (colon == std::string::npos) {
            break;
        }
        fields.push_back(line.substr(pos, colon - pos));
        pos = colon + 1;
    }
    fields.push_back(line.substr(pos));
    return fields;
}

std::string userOfLine(const std::string& line) {
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') {
        return {};
    }
    return toLower(trim(splitFields(line)[0]));
}

namespace {

std::string domainOf(const std::string& address) {
    auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : address.substr(at + 1);
}

bool isTrue(const std::string& v) {
    std::string l = toLower(v);
    return l.empty() || l == "y" || l == "yes" || l == "true" || l == "1";
}

std::vector<std::string> splitList(const std::string& s) {
    std::vector<std::string> out;
    std::string item;
    std::istringstream in(s);
    while (std::getline(in, item, ',')) {
        item = toLower(trim(item));
        if (!item.empty() && std::find(out.begin(), out.end(), item) == out.end()) {
            out.push_back(item);
        }
    }
    return out;
}

[[noreturn]] void fail(const std::string& name, int lineNo, const std::string& what) {
    throw PasswdFileError(name + ":" + std::to_string(lineNo) + ": " + what);
}

bool isValidAddress(const std::string& a) {
    return !a.empty() && a.front() != '@' && a.back() != '@' &&
           std::none_of(a.begin(), a.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; });
}

// Fields 8 and later: "key=value key2=value2" (Dovecot extra fields; a bare key means yes).
void parseExtraFields(const std::string& text, PasswdUser& u, const std::string& name, int lineNo) {
    std::istringstream in(text);
    std::string token;
    while (in >> token) {
        auto eq = token.find('=');
        std::string key = toLower(token.substr(0, eq));
        std::string value = eq == std::string::npos ? std::string() : token.substr(eq + 1);
        if (key.empty()) {
            fail(name, lineNo, "empty extra field name");
        }
        if (key == "mailbox") {
            if (value.empty()) {
                fail(name, lineNo, "mailbox= needs a value");
            }
            u.mailbox = value;
        } else if (key == "senders") {
            u.sendersGiven = true;
            for (auto& s : splitList(value)) {
                if (std::find(u.senders.begin(), u.senders.end(), s) == u.senders.end()) {
                    u.senders.push_back(s);
                }
            }
        } else if (key == "disabled") {
            u.disabled = isTrue(value);
        } else if (key == "nologin") {
            u.noLogin = isTrue(value);
        } else if (key == "require_app_password") {
            u.requireAppPassword = isTrue(value);
        } else if (key.rfind(AppPasswordFieldPrefix, 0) == 0) {
            const std::string id = key.substr(std::string(AppPasswordFieldPrefix).size());
            try {
                u.appPasswords[id] = parseAppPasswordField(id, value);
            } catch (const std::exception& e) {
                fail(name, lineNo, e.what());
            }
        } else if (key.rfind("postern.", 0) != 0) {
            // "postern."-prefixed names are what backends tell the host (api::
            // ReplicaReadAttribute): never taken from a line, which anyone who can edit
            // the file could otherwise use to switch off the negative cache for a user.
            u.extra[key] = value;
        }
    }
}

}  // namespace

namespace {

std::int64_t parseSeconds(const std::string& text, const char* what) {
    if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) {
        throw std::invalid_argument(std::string("app password: bad ") + what + " '" + text + "'");
    }
    return std::stoll(text);
}

}  // namespace

api::apppw::Entry parseAppPasswordField(const std::string& id, const std::string& value) {
    namespace ap = api::apppw;
    if (!ap::validId(id)) {
        throw std::invalid_argument("app password: bad id '" + id + "'");
    }
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (parts.size() < 5) {
        auto semi = value.find(';', pos);
        if (semi == std::string::npos) {
            throw std::invalid_argument("app password " + id +
                                        ": expected scopes;created;expires;networks;label;hash");
        }
        parts.push_back(value.substr(pos, semi - pos));
        pos = semi + 1;
    }
    parts.push_back(value.substr(pos));
    ap::Entry e;
    e.id = id;
    e.scopes = ap::parseScopes(parts[0]);
    if (e.scopes == 0) {
        throw std::invalid_argument("app password " + id + ": bad scopes '" + parts[0] + "'");
    }
    e.created = parseSeconds(parts[1], "created time");
    e.expires = parseSeconds(parts[2], "expiry time");
    if (!ap::validNetworks(parts[3])) {
        throw std::invalid_argument("app password " + id + ": bad networks '" + parts[3] + "'");
    }
    e.networks = parts[3];
    if (!parts[4].empty() && !ap::validLabel(parts[4])) {
        throw std::invalid_argument("app password " + id + ": bad label");
    }
    e.label = parts[4];
    if (parts[5].empty() || parts[5][0] != '{') {
        throw std::invalid_argument("app password " + id + ": the hash must be {SCHEME}hash");
    }
    e.hash = parts[5];
    return e;
}

std::string formatAppPasswordField(const api::apppw::Entry& e) {
    return api::apppw::scopesText(e.scopes) + ";" + std::to_string(e.created) + ";" + std::to_string(e.expires) +
           ";" + e.networks + ";" + e.label + ";" + e.hash;
}

PasswdFile PasswdFile::parse(const std::string& passwdText, const std::string& passwdName,
                             const std::string& aliasesText, const std::string& aliasesName,
                             const std::vector<std::string>& extraDomains) {
    PasswdFile f;
    std::istringstream in(passwdText);
    std::string line;
    int lineNo = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
        if (trim(line).empty() || trim(line)[0] == '#') {
            continue;
        }
        // user:password:uid:gid:gecos:home:shell:extra fields (the rest may contain ':')
        std::vector<std::string> fields = splitFields(line);
        if (fields.size() < 2) {
            fail(passwdName, lineNo, "expected user:password");
        }
        PasswdUser u;
        u.user = toLower(trim(fields[0]));
        if (!isValidAddress(u.user)) {
            fail(passwdName, lineNo, "invalid user name");
        }
        const std::string key = u.user;
        if (auto d = domainOf(key); !d.empty()) {
            f.domains_.insert(d);
        }
        auto brokenUser = [&](const std::string& why) {
            f.broken_.emplace(key, why);  // the first problem of the user is kept
            f.users_.erase(key);
        };
        if (f.broken_.count(key)) {
            continue;  // already broken (a third line of a duplicate user, ...)
        }
        u.passwordHash = fields[1];
        u.senders.push_back(u.user);
        if (fields.size() == 8) {
            try {
                parseExtraFields(fields[7], u, passwdName, lineNo);
            } catch (const PasswdFileError& e) {
                brokenUser(e.what());
                continue;
            }
        }
        if (f.users_.count(key)) {
            brokenUser(passwdName + ":" + std::to_string(lineNo) + ": duplicate user " + key);
            continue;
        }
        f.users_.emplace(key, std::move(u));
    }

    std::istringstream ain(aliasesText);
    lineNo = 0;
    while (std::getline(ain, line)) {
        ++lineNo;
        std::string t = trim(line);
        if (t.empty() || t[0] == '#') {
            continue;
        }
        auto colon = t.find(':');
        if (colon == std::string::npos) {
            fail(aliasesName, lineNo, "expected alias: destination[, destination...]");
        }
        std::string alias = toLower(trim(t.substr(0, colon)));
        if (!isValidAddress(alias)) {
            fail(aliasesName, lineNo, "invalid alias address");
        }
        auto dests = splitList(t.substr(colon + 1));
        if (dests.empty()) {
            fail(aliasesName, lineNo, "alias " + alias + " has no destination");
        }
        for (const auto& d : dests) {
            if (!isValidAddress(d)) {
                fail(aliasesName, lineNo, "invalid destination '" + d + "'");
            }
        }
        if (!f.aliases_.emplace(alias, std::move(dests)).second) {
            fail(aliasesName, lineNo, "duplicate alias " + alias);
        }
        // An alias-only domain is still ours, or its aliases could never be reached.
        if (auto d = domainOf(alias); !d.empty()) {
            f.domains_.insert(d);
        }
    }
    for (const auto& d : extraDomains) {
        f.domains_.insert(toLower(trim(d)));
    }
    return f;
}

const std::string* PasswdFile::findBroken(const std::string& address) const {
    auto it = broken_.find(address);
    return it == broken_.end() ? nullptr : &it->second;
}

void PasswdFile::requireNoBrokenUsers() const {
    if (!broken_.empty()) throw PasswdFileError(broken_.begin()->second);
}

std::string PasswdFile::describeBroken(std::size_t max) const {
    std::string out;
    std::size_t n = 0;
    for (const auto& [user, why] : broken_) {
        if (n++ == max) {
            out += "; ...";
            break;
        }
        if (!out.empty()) out += "; ";
        out += user + " (" + why + ")";
    }
    return out;
}

const PasswdUser* PasswdFile::findUser(const std::string& address) const {
    auto it = users_.find(address);
    return it == users_.end() ? nullptr : &it->second;
}

const std::vector<std::string>* PasswdFile::findAlias(const std::string& address) const {
    auto it = aliases_.find(address);
    return it == aliases_.end() ? nullptr : &it->second;
}

}  // namespace postern::plugins::passwdfile
