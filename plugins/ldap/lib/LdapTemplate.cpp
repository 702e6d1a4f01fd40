// Filter and DN templates with %u / %n / %d placeholders, escaped on expansion.
#include "LdapTemplate.h"

#include "LdapEscape.h"

#include <stdexcept>

namespace postern::plugins::ldap {

NameParts NameParts::split(std::string_view name) {
    NameParts p;
    p.full = std::string(name);
    // The last '@' separates the domain: a quoted local part may itself contain '@'.
    const auto at = name.rfind('@');
    if (at == std::string_view::npos) {
        p.local = p.full;
    } else {
        p.local = std::string(name.substr(0, at));
        p.domain = std::string(name.substr(at + 1));
    }
    return p;
}

LdapTemplate LdapTemplate::parse(const std::string& key, const std::string& text, Kind kind) {
    LdapTemplate t;
    t.kind_ = kind;
    t.text_ = text;
    if (text.empty()) {
        throw std::invalid_argument("config key '" + key + "' is empty");
    }
    std::string literal;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            literal += text[i];
            continue;
        }
        if (i + 1 >= text.size()) {
            throw std::invalid_argument("config key '" + key + "': lone '%' at the end (use %% for a percent sign)");
        }
        const char p = text[++i];
        if (p == '%') {
            literal += '%';
            continue;
        }
        if (p != 'u' && p != 'n' && p != 'd') {
            throw std::invalid_argument("config key '" + key + "': unknown placeholder '%" + std::string(1, p) +
                                        "' (known: %u address, %n local part, %d domain, %% percent)");
        }
        if (!literal.empty()) {
            t.pieces_.push_back({0, literal});
            literal.clear();
        }
        t.pieces_.push_back({p, {}});
    }
    if (!literal.empty()) {
        t.pieces_.push_back({0, literal});
    }
    if (kind == Kind::Filter) {
        // RFC 4515 2: a filter is one parenthesised item. Catching a typo here beats a
        // "filter error" TempFail on every login.
        int depth = 0;
        bool closedTop = false;
        for (std::size_t i = 0; i < text.size(); ++i) {
            const char c = text[i];
            if (c == ')' && depth == 0) {
                throw std::invalid_argument("config key '" + key + "': unbalanced ')'");
            }
            if (closedTop && c != ' ') {
                throw std::invalid_argument("config key '" + key + "': text after the closing ')'");
            }
            if (c == '\\') {
                ++i;
            } else if (c == '(') {
                ++depth;
            } else if (c == ')') {
                if (--depth < 0) {
                    throw std::invalid_argument("config key '" + key + "': unbalanced ')'");
                }
                closedTop = depth == 0;
            } else if (depth == 0 && c != ' ') {
                throw std::invalid_argument("config key '" + key + "': a filter must be enclosed in parentheses");
            }
        }
        if (depth != 0 || !closedTop) {
            throw std::invalid_argument("config key '" + key + "': unbalanced '('");
        }
    }
    return t;
}

std::string LdapTemplate::expand(const NameParts& parts) const {
    std::string out;
    for (const auto& piece : pieces_) {
        if (piece.placeholder == 0) {
            out += piece.literal;
            continue;
        }
        const std::string& value = piece.placeholder == 'u'   ? parts.full
                                   : piece.placeholder == 'n' ? parts.local
                                                              : parts.domain;
        out += kind_ == Kind::Filter ? escapeFilterValue(value) : escapeDnValue(value);
    }
    return out;
}

bool LdapTemplate::pinsDomain() const {
    bool full = false, local = false, domain = false;
    for (const auto& piece : pieces_) {
        full |= piece.placeholder == 'u';
        local |= piece.placeholder == 'n';
        domain |= piece.placeholder == 'd';
    }
    if (!local) return full || domain;
    // %n with %d pins only when every match needs both: no alternative or negation
    // ("(|(uid=%n)(associatedDomain=%d))" finds bob's entry for bob@any-domain).
    return domain && text_.find("(|") == std::string::npos && text_.find("(!") == std::string::npos;
}

}  // namespace postern::plugins::ldap
