// Reverse-path / Forward-path parser: a recursive-descent reading of the RFC 5321 4.1.2
// grammar (Path, A-d-l, Mailbox, Dot-string, Quoted-string, Domain, address-literal).
#include "smtpproto/SmtpAddress.h"

#include "core/Idna.h"
#include "core/Utf8.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>

namespace postern::smtp {

namespace {

// RFC 5321 4.5.3.1: size limits.
constexpr std::size_t MaxLocalPart = 64;   // 4.5.3.1.1
constexpr std::size_t MaxDomain = 255;     // 4.5.3.1.2
constexpr std::size_t MaxLabel = 63;       // RFC 1035 2.3.4
constexpr std::size_t MaxPath = 256;       // 4.5.3.1.3, including "<" and ">"

bool isAlpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool isLetDig(unsigned char c) { return isAlpha(c) || isDigit(c); }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// RFC 5322 3.2.3 atext (used by RFC 5321 Atom).
bool isAtext(unsigned char c) {
    if (isLetDig(c))
        return true;
    return c != 0 && std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr;
}

// Length of the well-formed UTF-8 sequence (RFC 3629 4) starting at s[pos], 0 if ill-formed
// (overlong forms, surrogates, code points above U+10FFFF and truncation all count).
std::size_t utf8Length(std::string_view s, std::size_t pos) { return core::utf8SequenceLength(s, pos); }

class PathParser {
public:
    PathParser(std::string_view text, const PathOptions& options) : s_(text), opt_(options) {}

    ParsedPath parsePath(PathKind kind, std::size_t* consumed) {
        if (!eat('<'))
            return fail(PathError::MissingBrackets, "path must start with '<'");
        if (eat('>')) {
            if (kind == PathKind::Forward)
                return fail(PathError::NullNotAllowed, "null path not allowed here");
            r_.isNull = true;
            return finish(consumed);
        }
        // RFC 5321 4.1.2: Path = "<" [ A-d-l ":" ] Mailbox ">". A source route is parsed
        // so that a path with one is accepted, then ignored (RFC 5321 appendix C: "SMTP
        // servers MUST ignore the route"): the message goes to Mailbox only, and routing
        // decisions never see the route's domains.
        if (peek() == '@') {
            if (!parseSourceRoute())
                return r_;
        }
        std::size_t localStart = pos_;
        if (!parseLocalPart())
            return r_;
        std::string_view rawLocal = s_.substr(localStart, pos_ - localStart);

        // RFC 5321 4.1.1.3: "<Postmaster>" without a domain must be accepted (4.5.1).
        if (kind == PathKind::Forward && !routed_ && peek() == '>' && equalsNoCase(rawLocal, "postmaster")) {
            ++pos_;
            r_.isPostmaster = true;
            r_.localPart = "postmaster";
            return finish(consumed);
        }
        if (!parseAtDomain())
            return r_;
        if (atEnd())
            return fail(PathError::MissingBrackets, "path must end with '>'");
        if (!eat('>'))
            return fail(PathError::BadDomain, "invalid character in domain");
        return finish(consumed);
    }

    ParsedPath parseMailbox() {
        if (!parseLocalPart())
            return r_;
        if (!parseAtDomain())
            return r_;
        if (!atEnd())
            return fail(PathError::BadDomain, "invalid character in domain");
        r_.ok = true;
        r_.error = PathError::None;
        return r_;
    }

private:
    bool atEnd() const { return pos_ >= s_.size(); }
    unsigned char peek() const { return atEnd() ? 0 : static_cast<unsigned char>(s_[pos_]); }
    bool eat(char c) {
        if (!atEnd() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    static bool equalsNoCase(std::string_view a, std::string_view b) {
        if (a.size() != b.size())
            return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (lower(a[i]) != lower(b[i]))
                return false;
        return true;
    }

    ParsedPath fail(PathError e, const char* msg) {
        r_ = ParsedPath{};
        r_.ok = false;
        r_.error = e;
        r_.message = msg;
        return r_;
    }

    ParsedPath finish(std::size_t* consumed) {
        if (pos_ > MaxPath)
            return fail(PathError::PathTooLong, "path longer than 256 octets");
        // The address is kept, queued and relayed with its domain in A-labels, which can be
        // longer than the U-labels sent: it must still fit, or it could not be read back.
        if (!r_.isNull && !r_.isPostmaster && r_.address().size() + 2 > MaxPath)
            return fail(PathError::PathTooLong, "path longer than 256 octets with its domain in A-labels");
        if (consumed)
            *consumed = pos_;
        else if (!atEnd())
            return fail(PathError::TrailingGarbage, "characters after '>'");
        r_.ok = true;
        r_.error = PathError::None;
        return r_;
    }

    // A-d-l = At-domain *( "," At-domain ) ":"  with At-domain = "@" Domain.
    bool parseSourceRoute() {
        routed_ = true;
        for (;;) {
            if (!eat('@')) {
                fail(PathError::BadSourceRoute, "bad source route");
                return false;
            }
            std::string ignored;
            if (!parseDomainName(ignored)) {
                PathError e = r_.error == PathError::DomainTooLong ? r_.error : PathError::BadSourceRoute;
                fail(e, e == PathError::DomainTooLong ? "domain too long" : "bad source route");
                return false;
            }
            if (eat(':'))
                return true;
            if (!eat(',')) {
                fail(PathError::BadSourceRoute, "bad source route");
                return false;
            }
        }
    }

    // Local-part = Dot-string / Quoted-string; fills localPart unquoted.
    bool parseLocalPart() {
        std::size_t start = pos_;
        std::string local;
        if (peek() == '"') {
            ++pos_;
            for (;;) {
                if (atEnd()) {
                    fail(PathError::BadLocalPart, "unterminated quoted string");
                    return false;
                }
                unsigned char c = peek();
                if (c == '"') {
                    ++pos_;
                    break;
                }
                if (c == '\\') {
                    // quoted-pairSMTP = %d92 %d32-126
                    unsigned char n = pos_ + 1 < s_.size() ? s_[pos_ + 1] : 0;
                    if (n < 32 || n > 126) {
                        fail(n >= 0x80 ? PathError::EightBitNotAllowed : PathError::BadLocalPart,
                             "bad quoted pair");
                        return false;
                    }
                    local += static_cast<char>(n);
                    pos_ += 2;
                    continue;
                }
                if (c >= 0x80) {
                    if (!takeUtf8(local))
                        return false;
                    continue;
                }
                // qtextSMTP = %d32-33 / %d35-91 / %d93-126
                if (c < 32 || c > 126) {
                    fail(PathError::BadLocalPart, "invalid character in quoted string");
                    return false;
                }
                local += static_cast<char>(c);
                ++pos_;
            }
        } else {
            // Dot-string = Atom *("." Atom)
            bool atomEmpty = true;
            for (;;) {
                unsigned char c = peek();
                if (isAtext(c)) {
                    local += static_cast<char>(c);
                    ++pos_;
                    atomEmpty = false;
                } else if (c >= 0x80) {
                    if (!takeUtf8(local))
                        return false;
                    atomEmpty = false;
                } else if (c == '.') {
                    if (atomEmpty) {
                        fail(PathError::BadLocalPart, "empty atom in local part");
                        return false;
                    }
                    local += '.';
                    ++pos_;
                    atomEmpty = true;
                } else {
                    break;
                }
            }
            if (atomEmpty) {
                fail(PathError::BadLocalPart, pos_ == start ? "empty local part" : "local part ends with '.'");
                return false;
            }
        }
        // RFC 5321 4.5.3.1.1: 64 octets, counted as sent (quotes and backslashes included).
        if (pos_ - start > MaxLocalPart) {
            fail(PathError::LocalPartTooLong, "local part longer than 64 octets");
            return false;
        }
        r_.localPart = std::move(local);
        return true;
    }

    bool takeUtf8(std::string& out) {
        // RFC 6531 3.3: UTF-8 in the local part only when SMTPUTF8 applies; otherwise any
        // 8-bit octet is a syntax error (RFC 5321 is 7-bit ASCII).
        std::size_t n = opt_.allowUtf8 ? utf8Length(s_, pos_) : 0;
        if (n == 0) {
            fail(PathError::EightBitNotAllowed, opt_.allowUtf8 ? "invalid UTF-8" : "8-bit character in address");
            return false;
        }
        out.append(s_.substr(pos_, n));
        pos_ += n;
        r_.hasUtf8 = true;
        return true;
    }

    // "@" ( Domain / address-literal ), filling domain.
    bool parseAtDomain() {
        if (!eat('@')) {
            if (atEnd() || peek() == '>')
                fail(PathError::MissingDomain, "missing domain");
            else
                fail(PathError::BadLocalPart, "invalid character in local part");
            return false;
        }
        std::string domain;
        bool literal = peek() == '[';
        if (literal ? !parseAddressLiteral(domain) : !parseAnyDomain(domain))
            return false;
        r_.domain = std::move(domain);
        r_.isAddressLiteral = literal;
        return true;
    }

    // The mailbox's domain: an ASCII Domain (A-labels checked), or with SMTPUTF8 (RFC 6531
    // 3.3: sub-domain =/ U-label) a UTF-8 domain, converted to A-labels. Either way `out` is
    // the lower-case A-label form, so every comparison later sees one spelling.
    bool parseAnyDomain(std::string& out) {
        std::size_t end = pos_;
        bool eightBit = false;
        while (end < s_.size()) {
            unsigned char c = static_cast<unsigned char>(s_[end]);
            if (isLetDig(c) || c == '-' || c == '.')
                ++end;
            else if (c >= 0x80 && opt_.allowUtf8)
                eightBit = true, ++end;
            else
                break;
        }
        if (!eightBit) {
            if (!parseDomainName(out))
                return false;
            if (core::hasALabel(out) && !core::domainToAscii(out)) {
                fail(PathError::BadDomain, "invalid A-label in domain");
                return false;
            }
            return true;
        }
        std::string_view raw = s_.substr(pos_, end - pos_);
        if (!core::isValidUtf8(raw)) {
            fail(PathError::EightBitNotAllowed, "invalid UTF-8 in domain");
            return false;
        }
        if (raw.size() > MaxDomain) {
            fail(PathError::DomainTooLong, "domain longer than 255 octets");
            return false;
        }
        std::optional<std::string> ascii = core::domainToAscii(raw);
        if (!ascii) {
            fail(PathError::BadDomain, "invalid internationalized domain name");
            return false;
        }
        PathParser sub(*ascii, opt_);
        std::string converted;
        if (!sub.parseDomainName(converted) || !sub.atEnd()) {
            PathError e = sub.r_.error == PathError::DomainTooLong ? PathError::DomainTooLong : PathError::BadDomain;
            fail(e, e == PathError::DomainTooLong ? "domain too long" : "invalid internationalized domain name");
            return false;
        }
        out = std::move(converted);
        pos_ = end;
        r_.hasUtf8 = true;
        return true;
    }

    // Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]. Lower-cased.
    // A trailing dot ("user@example.com.") is not in the grammar: error.
    bool parseDomainName(std::string& out) {
        std::size_t start = pos_;
        for (;;) {
            std::size_t labelStart = pos_;
            while (!atEnd() && (isLetDig(peek()) || peek() == '-')) {
                out += lower(s_[pos_]);
                ++pos_;
            }
            std::size_t len = pos_ - labelStart;
            if (len == 0) {
                if (peek() >= 0x80)
                    fail(PathError::BadDomain, "8-bit character in domain");
                else if (labelStart == start)
                    fail(PathError::BadDomain, "empty domain");
                else if (peek() == '.')
                    fail(PathError::BadDomain, "empty label in domain");
                else
                    fail(PathError::BadDomain, "domain ends with '.'");
                return false;
            }
            if (s_[labelStart] == '-' || s_[pos_ - 1] == '-') {
                fail(PathError::BadDomain, "label starts or ends with '-'");
                return false;
            }
            if (len > MaxLabel) {
                fail(PathError::DomainTooLong, "label longer than 63 octets");
                return false;
            }
            if (!eat('.'))
                break;
            out += '.';
        }
        if (pos_ - start > MaxDomain) {
            fail(PathError::DomainTooLong, "domain longer than 255 octets");
            return false;
        }
        return true;
    }

    // RFC 5321 4.1.3: "[" IPv4-address-literal / IPv6-address-literal "]". General
    // address literals (Standardized-tag ":" dcontent) name no registered tag we could
    // deliver to and are refused.
    bool parseAddressLiteral(std::string& out) {
        std::size_t close = s_.find(']', pos_);
        if (close == std::string_view::npos) {
            fail(PathError::BadAddressLiteral, "unterminated address literal");
            return false;
        }
        std::string_view inner = s_.substr(pos_ + 1, close - pos_ - 1);
        if (inner.size() + 2 > MaxDomain) {
            fail(PathError::DomainTooLong, "address literal too long");
            return false;
        }
        if (inner.size() >= 5 && equalsNoCase(inner.substr(0, 5), "IPv6:")) {
            std::string addr(inner.substr(5));
            unsigned char buf[16];
            char text[INET6_ADDRSTRLEN];
            if (addr.empty() || addr.find('%') != std::string::npos ||
                inet_pton(AF_INET6, addr.c_str(), buf) != 1 ||
                inet_ntop(AF_INET6, buf, text, sizeof text) == nullptr) {
                fail(PathError::BadAddressLiteral, "bad IPv6 address literal");
                return false;
            }
            out = "[IPv6:";
            out += text;
            out += ']';
        } else if (isIPv4Literal(inner)) {
            out = "[";
            out += inner;
            out += ']';
        } else {
            fail(PathError::BadAddressLiteral, "bad address literal");
            return false;
        }
        pos_ = close + 1;
        return true;
    }

    // IPv4-address-literal = Snum 3("." Snum); Snum = 1*3DIGIT representing 0-255.
    static bool isIPv4Literal(std::string_view s) {
        int parts = 0;
        std::size_t i = 0;
        while (true) {
            std::size_t start = i;
            int value = 0;
            while (i < s.size() && isDigit(s[i]) && i - start < 3)
                value = value * 10 + (s[i++] - '0');
            if (i == start || value > 255)
                return false;
            ++parts;
            if (i == s.size())
                return parts == 4;
            if (s[i] != '.' || parts == 4)
                return false;
            ++i;
        }
    }

    std::string_view s_;
    const PathOptions& opt_;
    std::size_t pos_ = 0;
    bool routed_ = false;
    ParsedPath r_;
};

}  // namespace

bool isDotString(std::string_view local, bool allowUtf8) {
    if (local.empty() || local.front() == '.' || local.back() == '.')
        return false;
    for (std::size_t i = 0; i < local.size();) {
        unsigned char c = local[i];
        if (c == '.') {
            if (local[i + 1] == '.')  // safe: back() is not '.'
                return false;
            ++i;
        } else if (isAtext(c)) {
            ++i;
        } else if (c >= 0x80 && allowUtf8) {
            std::size_t n = utf8Length(local, i);
            if (n == 0)
                return false;
            i += n;
        } else {
            return false;
        }
    }
    return true;
}

std::string ParsedPath::address() const {
    if (isNull)
        return {};
    if (isPostmaster)
        return localPart;
    std::string out;
    if (isDotString(localPart, true)) {
        out = localPart;
    } else {
        out += '"';
        for (char c : localPart) {
            if (c == '"' || c == '\\')
                out += '\\';
            out += c;
        }
        out += '"';
    }
    out += '@';
    out += domain;
    return out;
}

ParsedPath parsePath(std::string_view text, PathKind kind, const PathOptions& options, std::size_t* consumed) {
    return PathParser(text, options).parsePath(kind, consumed);
}

ParsedPath parseMailbox(std::string_view text, const PathOptions& options) {
    return PathParser(text, options).parseMailbox();
}

}  // namespace postern::smtp
