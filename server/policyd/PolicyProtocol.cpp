#include "policyd/PolicyProtocol.h"

#include "core/Text.h"

#include <cctype>

namespace postern::policyd {

namespace {

bool isSpace(char c) { return c == ' ' || c == '\t'; }

bool equalsNoCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Reply text: control characters (CR, LF, NUL, ...) become "?" so a text can
// never split a reply line or a log line.
std::string cleanText(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        unsigned char u = static_cast<unsigned char>(c);
        out += (u < 0x20 && c != '\t') || u == 0x7f ? '?' : c;
    }
    return out;
}

// Leading "d.ddd.ddd" of `text` followed by whitespace or the end. On success: class,
// subject, detail and the rest of the text after the code.
bool leadingEnhanced(std::string_view text, int& cls, int& subject, int& detail, std::string_view& rest) {
    std::size_t i = 0;
    auto number = [&](int& out, std::size_t maxDigits) {
        std::size_t start = i;
        out = 0;
        while (i < text.size() && isDigit(text[i]) && i - start < maxDigits) out = out * 10 + (text[i++] - '0');
        return i > start && !(i < text.size() && isDigit(text[i]));
    };
    if (!number(cls, 1) || (cls != 2 && cls != 4 && cls != 5)) return false;
    if (i >= text.size() || text[i++] != '.') return false;
    if (!number(subject, 3)) return false;
    if (i >= text.size() || text[i++] != '.') return false;
    if (!number(detail, 3)) return false;
    if (i < text.size() && !isSpace(text[i])) return false;
    rest = core::trimSpace(text.substr(i));
    return true;
}

core::PolicyDecision refuse(int code, int enhanced, std::string text) {
    core::PolicyDecision d;
    d.kind = core::PolicyDecision::Kind::Refuse;
    d.code = code;
    d.enhanced = enhanced;
    d.text = std::move(text);
    return d;
}

// RFC 5322 3.6.8 field-name: printable US-ASCII except ':', at least one, then ':'.
bool isHeaderLine(std::string_view h) {
    auto colon = h.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    for (std::size_t i = 0; i < colon; ++i) {
        unsigned char u = static_cast<unsigned char>(h[i]);
        if (u < 33 || u > 126) return false;
    }
    return true;
}

}  // namespace

Attributes requestAttributes(const core::PolicyFacts& f) {
    const std::string none;
    Attributes a;
    a.reserve(32);
    a.emplace_back("request", "smtpd_access_policy");
    a.emplace_back("protocol_state", f.protocolState);
    a.emplace_back("protocol_name", f.extended ? "ESMTP" : "SMTP");
    a.emplace_back("helo_name", f.heloName);
    a.emplace_back("queue_id", none);
    a.emplace_back("sender", f.sender);
    a.emplace_back("recipient", f.recipient);
    a.emplace_back("recipient_count", "0");
    a.emplace_back("client_address", f.client.host());
    a.emplace_back("client_name", "unknown");
    a.emplace_back("reverse_client_name", "unknown");
    a.emplace_back("instance", f.instance);
    a.emplace_back("sasl_method", f.saslMethod);
    a.emplace_back("sasl_username", f.saslUsername);
    a.emplace_back("sasl_sender", none);
    a.emplace_back("size", std::to_string(f.size));
    a.emplace_back("ccert_subject", none);
    a.emplace_back("ccert_issuer", none);
    a.emplace_back("ccert_fingerprint", none);
    // As Postfix: empty and 0 for a session in clear text (review finding: they were empty
    // for TLS sessions too, so "reject submission without TLS" rejected everything).
    a.emplace_back("encryption_protocol", f.tlsProtocol);
    a.emplace_back("encryption_cipher", f.tlsCipher);
    a.emplace_back("encryption_keysize", std::to_string(f.tlsCipherBits));
    a.emplace_back("etrn_domain", none);
    a.emplace_back("stress", none);
    a.emplace_back("ccert_pubkey_fingerprint", none);
    a.emplace_back("client_port", std::to_string(f.client.port));
    a.emplace_back("policy_context", f.submission ? "submission" : "mx");
    a.emplace_back("server_address", f.serverAddress);
    a.emplace_back("server_port", f.serverPort ? std::to_string(f.serverPort) : none);
    return a;
}

std::string wireValue(std::string_view value) {
    std::string out(value);
    for (char& c : out)
        if (c == '\r' || c == '\n' || c == '\0') c = '?';
    return out;
}

std::string formatRequest(const Attributes& attributes) {
    std::string out;
    for (const auto& [name, value] : attributes) {
        out += name;
        out += '=';
        out += wireValue(value);
        out += '\n';
    }
    out += '\n';
    return out;
}

std::size_t responseLength(std::string_view buffer) {
    std::size_t pos = 0;
    while (pos < buffer.size()) {
        auto nl = buffer.find('\n', pos);
        if (nl == std::string_view::npos) return 0;
        std::string_view line = buffer.substr(pos, nl - pos);
        if (line.empty() || line == "\r") return nl + 1;
        pos = nl + 1;
    }
    return 0;
}

Response parseResponse(std::string_view block) {
    Response r;
    bool any = false;
    bool haveAction = false;
    std::size_t pos = 0;
    while (pos < block.size()) {
        auto nl = block.find('\n', pos);
        std::string_view line = block.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? block.size() : nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) break;  // end of the response
        any = true;
        auto eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            r.error = "malformed_line";
            return r;
        }
        if (!haveAction && line.substr(0, eq) == "action") {
            r.action = std::string(line.substr(eq + 1));
            haveAction = true;
        }
    }
    if (!any) {
        r.error = "empty_response";
        return r;
    }
    if (!haveAction) {
        r.error = "no_action";
        return r;
    }
    r.ok = true;
    return r;
}

ActionResult interpretAction(std::string_view raw) {
    using Kind = core::PolicyDecision::Kind;
    ActionResult r;
    const std::string_view action = core::trimSpace(raw);
    r.decision.action = cleanText(action);
    if (action.empty()) {
        r.status = ActionStatus::Malformed;
        r.note = "empty action";
        return r;
    }
    std::size_t sp = 0;
    while (sp < action.size() && !isSpace(action[sp])) ++sp;
    const std::string_view word = action.substr(0, sp);
    const std::string_view rest = core::trimSpace(action.substr(sp));
    auto known = [&](core::PolicyDecision d) {
        d.action = r.decision.action;
        r.decision = std::move(d);
        r.status = ActionStatus::Known;
        return r;
    };

    if (equalsNoCase(word, "OK") || equalsNoCase(word, "DUNNO") || equalsNoCase(word, "DEFER_IF_REJECT"))
        return known({});
    // The refusal's text may start with an enhanced status code ("REJECT 5.7.23 SPF fail",
    // "550 5.7.1 ..."): it replaces the x.7.1 default, as Postfix's dsn_split does for access
    // maps and policy answers, instead of standing in the text after another code.
    auto refusal = [&](int code, std::string_view text, const char* empty) {
        int enhanced = 701;  // x.7.1, as Postfix uses for access-map refusals
        int cls = 0, subject = 0, detail = 0;
        std::string_view after;
        if (leadingEnhanced(text, cls, subject, detail, after)) {
            text = after;
            // RFC 3463: the class must match the reply code; Postfix corrects it, so does
            // Postern (the enum stores no class). Details past 99 cannot be represented:
            // x.7.1 then.
            if (detail < 100) enhanced = subject * 100 + detail;
        }
        return known(refuse(code, enhanced, text.empty() ? std::string(empty) : cleanText(text)));
    };
    if (equalsNoCase(word, "REJECT")) return refusal(550, rest, "Access denied");
    if (equalsNoCase(word, "DEFER") || equalsNoCase(word, "DEFER_IF_PERMIT"))
        return refusal(450, rest, "Service temporarily unavailable");
    if (word.size() == 3 && (word[0] == '4' || word[0] == '5') && isDigit(word[1]) && isDigit(word[2])) {
        int code = (word[0] - '0') * 100 + (word[1] - '0') * 10 + (word[2] - '0');
        if (code == 421) code = 450;
        if (code == 521) code = 550;
        return refusal(code, rest, "Access denied");
    }
    if (equalsNoCase(word, "PREPEND")) {
        if (!isHeaderLine(rest)) {
            r.status = ActionStatus::Malformed;
            r.note = "PREPEND without a header";
            return r;
        }
        core::PolicyDecision d;
        d.kind = Kind::Prepend;
        d.header = cleanText(rest);
        return known(std::move(d));
    }
    if (equalsNoCase(word, "HOLD") || equalsNoCase(word, "DISCARD")) {
        core::PolicyDecision d;
        d.kind = equalsNoCase(word, "HOLD") ? Kind::Hold : Kind::Discard;
        d.text = cleanText(rest);
        return known(std::move(d));
    }
    if (equalsNoCase(word, "WARN") || equalsNoCase(word, "INFO")) {
        ActionResult w = known({});
        w.note = cleanText(rest);
        return w;
    }
    if (equalsNoCase(word, "FILTER") || equalsNoCase(word, "REDIRECT") || equalsNoCase(word, "BCC")) {
        r.status = ActionStatus::Unsupported;
        r.note = cleanText(word);
        return r;
    }
    r.status = ActionStatus::Unknown;
    r.note = "unknown action";
    return r;
}

}  // namespace postern::policyd
