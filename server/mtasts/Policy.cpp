#include "mtasts/Policy.h"

#include "core/Text.h"
#include "core/Utf8.h"

#include <algorithm>
#include <cctype>

namespace postern::mtasts {

namespace {

bool isWsp(char c) { return c == ' ' || c == '\t'; }

bool isAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// RFC 5321 Domain (LDH labels of 1..63, at most 253 octets), no trailing dot.
bool isDomain(std::string_view d) {
    if (d.empty() || d.size() > 253) return false;
    std::size_t start = 0;
    while (true) {
        auto dot = d.find('.', start);
        std::string_view label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63) return false;
        if (!isAlnum(label.front()) || !isAlnum(label.back())) return false;
        for (char c : label)
            if (!isAlnum(c) && c != '-') return false;
        if (dot == std::string_view::npos) return true;
        start = dot + 1;
    }
}

std::string stripDot(std::string_view s) {
    std::string out = core::asciiLower(s);
    if (!out.empty() && out.back() == '.') out.pop_back();
    return out;
}

bool fail(std::string* error, const std::string& why) {
    if (error) *error = why;
    return false;
}

}  // namespace

const char* modeName(Mode m) {
    switch (m) {
    case Mode::Enforce: return "enforce";
    case Mode::Testing: return "testing";
    case Mode::None: return "none";
    }
    return "?";
}

std::optional<Policy> parsePolicy(std::string_view body, std::string* error) {
    std::optional<std::string> version, mode, maxAge;
    std::vector<std::string> mx;
    std::size_t pos = 0;
    while (pos < body.size()) {
        auto nl = body.find('\n', pos);
        std::string_view line = body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? body.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (core::trimBlanks(line).empty()) continue;
        auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            fail(error, "line without ':'");
            return std::nullopt;
        }
        // sts-policy-field-name: no white space before the colon.
        std::string_view key = line.substr(0, colon);
        std::string value(core::trimBlanks(line.substr(colon + 1)));
        if (key == "version") {
            if (!version) version = value;
        } else if (key == "mode") {
            if (!mode) mode = value;
        } else if (key == "max_age") {
            if (!maxAge) maxAge = value;
        } else if (key == "mx") {
            mx.push_back(value);
        }  // anything else: an extension, ignored (RFC 8461 3.2)
    }
    if (!version || *version != "STSv1") {
        fail(error, version ? "version is not STSv1" : "no version");
        return std::nullopt;
    }
    Policy p;
    if (!mode) {
        fail(error, "no mode");
        return std::nullopt;
    }
    if (*mode == "enforce") p.mode = Mode::Enforce;
    else if (*mode == "testing") p.mode = Mode::Testing;
    else if (*mode == "none") p.mode = Mode::None;
    else {
        fail(error, "unknown mode");
        return std::nullopt;
    }
    if (!maxAge || maxAge->empty() || maxAge->size() > 10 ||
        !std::all_of(maxAge->begin(), maxAge->end(), [](unsigned char c) { return std::isdigit(c); })) {
        fail(error, maxAge ? "max_age is not a number" : "no max_age");
        return std::nullopt;
    }
    unsigned long long age = std::stoull(*maxAge);
    // RFC 8461 3.2 gives 31557600 as the maximum: a larger value is capped, not an error.
    p.maxAgeCapped = age > MaxMaxAge;
    p.maxAge = static_cast<std::uint32_t>(std::min<unsigned long long>(age, MaxMaxAge));
    for (const auto& m : mx) {
        std::string pattern = stripDot(m);
        std::string_view domain = pattern;
        if (domain.starts_with("*.")) domain.remove_prefix(2);
        if (!isDomain(domain)) {
            fail(error, "malformed mx pattern");
            return std::nullopt;
        }
        if (std::find(p.mx.begin(), p.mx.end(), pattern) == p.mx.end()) p.mx.push_back(std::move(pattern));
    }
    if (p.mode != Mode::None && p.mx.empty()) {
        fail(error, "no mx");
        return std::nullopt;
    }
    return p;
}

bool mxMatches(std::string_view patternIn, std::string_view hostIn) {
    std::string pattern = stripDot(patternIn);
    std::string host = stripDot(hostIn);
    if (pattern.empty() || host.empty()) return false;
    if (!pattern.starts_with("*.")) return pattern == host;
    std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.net"
    if (host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
    std::string_view first = std::string_view(host).substr(0, host.size() - suffix.size());
    return first.find('.') == std::string_view::npos;  // exactly one label
}

bool mxAllowed(const Policy& policy, std::string_view host) {
    return std::any_of(policy.mx.begin(), policy.mx.end(), [&](const std::string& p) { return mxMatches(p, host); });
}

TxtRecord parseTxtRecord(std::string_view text) {
    TxtRecord r;
    // sts-version = "v" *WSP "=" *WSP "STSv1"
    std::size_t i = 0;
    auto skipWsp = [&] {
        while (i < text.size() && isWsp(text[i])) ++i;
    };
    if (text.empty() || text[0] != 'v') return r;
    i = 1;
    skipWsp();
    if (i >= text.size() || text[i] != '=') return r;
    ++i;
    skipWsp();
    if (text.substr(i, 5) != "STSv1") return r;
    i += 5;
    r.kind = TxtKind::Invalid;
    // 1*(sts-field-delim sts-field) [sts-field-delim]; sts-field-delim = *WSP ";" *WSP
    bool haveId = false;
    int fields = 0;
    while (true) {
        skipWsp();
        if (i >= text.size()) break;
        if (text[i] != ';') return r;
        ++i;
        skipWsp();
        if (i >= text.size()) break;  // trailing delimiter
        // sts-field: name *WSP "=" *WSP value
        std::size_t nameStart = i;
        if (!isAlnum(text[i])) return r;
        while (i < text.size() && (isAlnum(text[i]) || text[i] == '_' || text[i] == '-' || text[i] == '.')) ++i;
        std::string_view name = text.substr(nameStart, i - nameStart);
        if (name.size() > 32) return r;
        skipWsp();
        if (i >= text.size() || text[i] != '=') return r;
        ++i;
        skipWsp();
        std::size_t valueStart = i;
        // sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): printable, no ';' '=' or space
        while (i < text.size()) {
            unsigned char c = static_cast<unsigned char>(text[i]);
            if (c < 0x21 || c > 0x7e || c == ';' || c == '=') break;
            ++i;
        }
        std::string_view value = text.substr(valueStart, i - valueStart);
        if (value.empty()) return r;
        ++fields;
        if (name == "id") {
            if (haveId) return r;
            if (value.size() > 32 || !std::all_of(value.begin(), value.end(), [](char c) { return isAlnum(c); }))
                return r;
            r.id = std::string(value);
            haveId = true;
        }
    }
    if (fields == 0 || !haveId) return r;
    r.kind = TxtKind::Ok;
    return r;
}

std::optional<std::string> stsIdFromRecords(const std::vector<std::string>& records) {
    std::optional<std::string> id;
    int sts = 0;
    for (const auto& text : records) {
        TxtRecord r = parseTxtRecord(text);
        if (r.kind == TxtKind::NotSts) continue;
        ++sts;
        if (r.kind == TxtKind::Ok) id = r.id;
    }
    if (sts != 1) return std::nullopt;
    return id;
}

std::string policyLine(const Policy& p) {
    std::string out = std::string(modeName(p.mode)) + " " + std::to_string(p.maxAge) + " ";
    for (std::size_t i = 0; i < p.mx.size(); ++i) out += (i ? "," : "") + p.mx[i];
    if (p.mx.empty()) out += "-";
    return out;
}

std::optional<Policy> parsePolicyLine(std::string_view line) {
    auto s1 = line.find(' ');
    if (s1 == std::string_view::npos) return std::nullopt;
    auto s2 = line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos) return std::nullopt;
    std::string body = "version: STSv1\nmode: " + std::string(line.substr(0, s1)) +
                       "\nmax_age: " + std::string(line.substr(s1 + 1, s2 - s1 - 1)) + "\n";
    std::string_view mx = line.substr(s2 + 1);
    if (mx != "-") {
        std::size_t pos = 0;
        while (pos <= mx.size()) {
            auto comma = mx.find(',', pos);
            body += "mx: " + std::string(mx.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos)) + "\n";
            if (comma == std::string_view::npos) break;
            pos = comma + 1;
        }
    }
    return parsePolicy(body);
}

}  // namespace postern::mtasts
