// One parsed, immutable copy of a Dovecot-style passwd-file and its aliases file.
// Formats: "user@domain:{SCHEME}hash[:uid:gid:gecos:home:shell:extra fields]" and
// "alias@domain: dest1, dest2"; '#' comment lines and blank lines are ignored.
#pragma once

#include "api/AppPassword.h"

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace postern::plugins::passwdfile {

struct PasswdUser {
    std::string user;                       // lower-cased "local@domain"
    std::string passwordHash;               // as written; "" = may not log in
    std::string mailbox;                    // mailbox=...; "" = default
    std::vector<std::string> senders;       // login address first, then senders=...
    bool sendersGiven = false;              // the line has a senders= field
    bool disabled = false;                  // disabled=yes: no login, no mail
    bool noLogin = false;                   // nologin=y: no login, still receives mail
    std::map<std::string, std::string> extra;  // other extra fields, kept as given
    // App passwords: require_app_password=yes, and one field per app password (see
    // parseAppPasswordField); never in `extra` (no hash leaks into the user's attributes).
    bool requireAppPassword = false;
    std::map<std::string, api::apppw::Entry> appPasswords;  // by id
};

// One app password as an extra field (no whitespace; the hash last, it may hold anything else):
//   app_password.<id>=<scopes>;<created>;<expires>;<networks>;<label>;<{SCHEME}hash>
// scopes "smtp", "pop3" or "smtp,pop3"; created/expires unix seconds (expires 0 = never);
// networks comma-separated CIDRs ("" = any); label [A-Za-z0-9._@+-] or "".
// Throws std::invalid_argument naming what is wrong.
api::apppw::Entry parseAppPasswordField(const std::string& id, const std::string& value);
std::string formatAppPasswordField(const api::apppw::Entry& e);  // the value part
inline constexpr const char* AppPasswordFieldPrefix = "app_password.";

// A syntax error, with file and line number. A passwd-file or aliases file that cannot be taken whole (parse() throws it, and the backend
// keeps its last good copy); inside parse() also what marks one user broken.
class PasswdFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Immutable once built; shared by reader threads through shared_ptr<const PasswdFile>.
class PasswdFile {
public:
    // Parses the texts; name arguments are for error messages only. Throws PasswdFileError
    // for a line that names no valid user (a user it would cut from the file: refusing the
    // whole file keeps the last good copy) and for any error in the aliases file. A line of
    // a valid user with a bad field, or a user on two lines (ambiguity), does not stop the
    // rest of the file: that user is "broken" (findBroken: a temporary failure for its
    // logins and mail until the file is fixed; review finding: one bad line froze every
    // other change, a disabled or removed account kept logging in).
    static PasswdFile parse(const std::string& passwdText, const std::string& passwdName,
                            const std::string& aliasesText, const std::string& aliasesName,
                            const std::vector<std::string>& extraDomains);

    // Keys are lower-cased addresses.
    const PasswdUser* findUser(const std::string& address) const;
    // Why a user's line(s) could not be taken ("users.passwd:12: duplicate user ..."); null
    // when it was taken or is not in the file.
    const std::string* findBroken(const std::string& address) const;
    std::size_t brokenCount() const { return broken_.size(); }
    // Throws PasswdFileError for the first broken user, if any (posternctl writes only a file
    // that loads whole).
    void requireNoBrokenUsers() const;
    // "a@x (users.passwd:3: ...); b@y (...)", the first `max` of them.
    std::string describeBroken(std::size_t max) const;
    const std::vector<std::string>* findAlias(const std::string& address) const;
    bool hasDomain(const std::string& domain) const { return domains_.count(domain) != 0; }

    std::size_t userCount() const { return users_.size(); }
    // Every user, in address order.
    template <typename F>
    void forEachUser(F&& f) const {
        for (const auto& [key, user] : users_) {
            f(user);
        }
    }
    std::size_t aliasCount() const { return aliases_.size(); }

private:
    std::map<std::string, PasswdUser> users_;
    std::map<std::string, std::string> broken_;  // user -> why (the first problem found)
    std::map<std::string, std::vector<std::string>> aliases_;
    std::set<std::string> domains_;
};

std::string toLower(std::string s);
std::string trim(const std::string& s);

// One passwd-file line split into its fields: user:password:uid:gid:gecos:home:shell:extra
// (at most 8; the extra fields, 8th on, may contain ':'). Shared by the parser and the editor.
std::vector<std::string> splitFields(const std::string& line);
// The lower-cased user of a line; "" for a blank or comment line.
std::string userOfLine(const std::string& line);

}  // namespace postern::plugins::passwdfile
