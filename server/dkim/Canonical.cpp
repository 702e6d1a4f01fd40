#include "dkim/Canonical.h"

#include <algorithm>

namespace postern::dkim {

namespace {

bool isWsp(char c) { return c == ' ' || c == '\t'; }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// The end of the line starting at `pos`: the index just after its CRLF, or size().
std::size_t lineEnd(std::string_view s, std::size_t pos) {
    std::size_t nl = s.find("\r\n", pos);
    return nl == std::string_view::npos ? s.size() : nl + 2;
}

}  // namespace

MessageParts splitMessage(std::string_view message) {
    MessageParts parts;
    std::size_t pos = 0;
    std::size_t headerEnd = message.size();
    bool blank = false;
    while (pos < message.size()) {
        if (message.compare(pos, 2, "\r\n") == 0) {  // the empty line
            headerEnd = pos;
            blank = true;
            break;
        }
        pos = lineEnd(message, pos);
    }
    parts.body = blank ? message.substr(headerEnd + 2) : std::string_view();
    const std::string_view section = message.substr(0, headerEnd);
    pos = 0;
    while (pos < section.size()) {
        const std::size_t start = pos;
        pos = lineEnd(section, pos);
        // Continuation lines (starting with WSP) belong to this field.
        while (pos < section.size() && isWsp(section[pos])) pos = lineEnd(section, pos);
        std::string_view raw = section.substr(start, pos - start);
        std::size_t colon = raw.find(':');
        std::string_view name = raw.substr(0, colon == std::string_view::npos ? 0 : colon);
        while (!name.empty() && isWsp(name.back())) name.remove_suffix(1);
        parts.headers.push_back({name, raw});
    }
    return parts;
}

std::string canonicalHeader(std::string_view raw, Canon canon) {
    if (canon == Canon::Simple) {
        std::string out(raw);
        if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
        return out;
    }
    std::string out;
    out.reserve(raw.size() + 2);
    std::size_t colon = raw.find(':');
    std::string_view name = raw.substr(0, colon == std::string_view::npos ? raw.size() : colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view() : raw.substr(colon + 1);
    for (char c : name)
        if (!isWsp(c) && c != '\r' && c != '\n') out += lower(c);
    if (colon != std::string_view::npos) out += ':';
    // Unfold (every CRLF goes: continuation lines start with WSP, the final CRLF is re-added),
    // WSP runs -> one SP, none at the start or the end of the value.
    bool pendingSpace = false;
    bool started = false;
    for (std::size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
            ++i;
            continue;
        }
        if (isWsp(c)) {
            pendingSpace = started;
            continue;
        }
        if (pendingSpace) out += ' ';
        pendingSpace = false;
        started = true;
        out += c;
    }
    out += "\r\n";
    return out;
}

void canonicalBody(std::string_view body, Canon canon, const std::function<void(std::string_view)>& out) {
    static constexpr std::string_view Crlf = "\r\n";
    std::size_t emptyLines = 0;  // held back: dropped if nothing but empty lines follows
    bool any = false;
    std::string line;
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t nl = body.find("\r\n", pos);
        std::string_view text = body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? body.size() : nl + 2;
        if (canon == Canon::Relaxed) {
            line.clear();
            bool space = false;
            for (char c : text) {
                if (isWsp(c)) {
                    space = true;
                    continue;
                }
                if (space) line += ' ';
                space = false;
                line += c;
            }
            text = line;
        }
        if (text.empty()) {
            ++emptyLines;
            continue;
        }
        for (; emptyLines > 0; --emptyLines) out(Crlf);
        out(text);
        out(Crlf);  // a last line without CRLF gets one (RFC 6376 3.4.3)
        any = true;
    }
    if (!any && canon == Canon::Simple) out(Crlf);
}

std::string canonicalBodyString(std::string_view body, Canon canon) {
    std::string s;
    canonicalBody(body, canon, [&](std::string_view piece) { s.append(piece); });
    return s;
}

FromDomain fromDomainOfValue(std::string_view value) {
    // One pass over the value with RFC 5322's nesting: quoted strings (with quoted-pairs),
    // comments (nested, with quoted-pairs) and one angle-addr. A top-level comma or a group
    // (':' at top level) means more than one address or a group: not one author domain.
    std::string plain;  // the value without comments and quoted strings' content
    std::string angle;
    bool inAngle = false, sawAngle = false;
    int depth = 0;
    bool quoted = false;
    bool quotedInAngle = false, quotedInPlain = false;
    for (std::size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (quoted) {
            if (c == '\\') ++i;
            else if (c == '"') quoted = false;
            if (inAngle) angle += 'q';  // a quoted local part keeps its '@' out of the way
            (inAngle ? quotedInAngle : quotedInPlain) = true;
            continue;
        }
        if (depth > 0) {
            if (c == '\\') ++i;
            else if (c == '(') ++depth;
            else if (c == ')') --depth;
            continue;
        }
        switch (c) {
        case '"': quoted = true; continue;
        case '(': depth = 1; continue;
        case '<':
            if (inAngle || sawAngle) return {"", "multiple_from", ""};
            inAngle = sawAngle = true;
            continue;
        case '>':
            if (!inAngle) return {"", "bad_from", ""};
            inAngle = false;
            continue;
        case ',':
        case ';':
            if (!inAngle) return {"", "multiple_from", ""};
            break;
        case ':':
            if (!inAngle) return {"", "multiple_from", ""};  // a group
            break;
        default: break;
        }
        if (inAngle) angle += c;
        else plain += c;
    }
    if (quoted || depth > 0 || inAngle) return {"", "bad_from", ""};
    std::string addr = sawAngle ? angle : plain;
    if (sawAngle && addr.find(':') != std::string::npos) addr = addr.substr(addr.rfind(':') + 1);  // source route
    std::size_t at = addr.rfind('@');
    if (at == std::string::npos) return {"", "bad_from", ""};
    std::string domain;
    for (char c : addr.substr(at + 1))
        if (!isWsp(c) && c != '\r' && c != '\n') domain += lower(c);
    while (!domain.empty() && domain.back() == '.') domain.pop_back();
    if (domain.empty() || domain.front() == '[' || domain.find_first_of("[]\\\"@") != std::string::npos)
        return {"", "bad_from", ""};
    std::string local;
    if (!(sawAngle ? quotedInAngle : quotedInPlain)) {
        for (char c : addr.substr(0, at))
            if (!isWsp(c) && c != '\r' && c != '\n') local += lower(c);
    }
    return {domain, "", local};
}

FromDomain fromDomain(const std::vector<HeaderField>& headers) {
    const HeaderField* from = nullptr;
    for (const auto& h : headers) {
        if (h.name.size() != 4 || lower(h.name[0]) != 'f' || lower(h.name[1]) != 'r' || lower(h.name[2]) != 'o' ||
            lower(h.name[3]) != 'm')
            continue;
        if (from) return {"", "multiple_from", ""};
        from = &h;
    }
    if (!from) return {"", "no_from", ""};
    std::size_t colon = from->raw.find(':');
    return fromDomainOfValue(from->raw.substr(colon + 1));
}

}  // namespace postern::dkim
