// Filter and DN templates with %u (full address), %n (local part), %d (domain) and %%;
// every value is escaped for where it lands (RFC 4515 filters, RFC 4514 DNs).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::plugins::ldap {

// The parts of a login or address that templates may use. A name without '@' has
// local = the whole name and domain = "".
struct NameParts {
    std::string full;
    std::string local;
    std::string domain;

    static NameParts split(std::string_view name);
};

// A parsed template; immutable, thread-safe to share.
class LdapTemplate {
public:
    enum class Kind { Filter, Dn };

    LdapTemplate() = default;

    // Throws std::invalid_argument naming `key` for an unknown placeholder, a lone '%', an
    // empty template, or (Filter) a template that is not one parenthesised filter with
    // balanced parentheses.
    static LdapTemplate parse(const std::string& key, const std::string& text, Kind kind);

    // The template with every placeholder replaced by the escaped value.
    std::string expand(const NameParts& parts) const;

    bool empty() const { return pieces_.empty(); }
    // Any %u, %n or %d in it.
    bool hasPlaceholders() const {
        for (const auto& p : pieces_)
            if (p.placeholder != 0) return true;
        return false;
    }
    // True when whatever the template matches has the name's domain in it: it uses %u or
    // %d and no %n, or %n and %d with no "(|" or "(!" (every match needs both). False for
    // "uid=%n,...", "(|(mail=%u)(uid=%n))" or "(|(uid=%n)(mail=%n@%d))", which find bob's
    // entry for bob@any-domain. Conservative: a false "no" only costs a temporary failure
    // for an entry that has no address of its own.
    bool pinsDomain() const;
    const std::string& text() const { return text_; }

private:
    struct Piece {
        char placeholder = 0;  // 0: literal text; 'u', 'n', 'd': a value
        std::string literal;
    };

    Kind kind_ = Kind::Filter;
    std::string text_;
    std::vector<Piece> pieces_;
};

}  // namespace postern::plugins::ldap
