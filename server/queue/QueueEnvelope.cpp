#include "queue/QueueEnvelope.h"

#include "smtpproto/DsnParams.h"
#include "smtpproto/Xtext.h"

#include <algorithm>
#include <charconv>

namespace postern::queue {

namespace {

constexpr std::string_view Magic = "postern-queue";

bool isSafeValue(std::string_view v) { return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos; }

std::int64_t toUnix(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point fromUnix(std::int64_t s) {
    return std::chrono::system_clock::time_point(std::chrono::seconds(s));
}

template <typename T>
bool parseNumber(std::string_view s, T& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

// "notify=SUCCESS,FAILURE orcpt=rfc822;a+40b" (attributes optional, space-separated).
std::string formatRecipientDsn(const core::RecipientDsn& d) {
    std::string out;
    if (d.notify != 0) out += "notify=" + smtp::formatNotify(d.notify);
    if (!d.orcptType.empty()) {
        if (!out.empty()) out += ' ';
        out += "orcpt=" + smtp::encodeXtext(d.orcptType) + ";" + smtp::encodeXtext(d.orcpt);
    }
    return out;
}

// "<index> <attributes>"; false if malformed (the line is then ignored).
bool parseRecipientDsn(std::string_view value, std::size_t& index, core::RecipientDsn& d) {
    auto sp = value.find(' ');
    if (!parseNumber(value.substr(0, sp), index)) return false;
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : value.substr(sp + 1);
    while (!rest.empty()) {
        auto end = rest.find(' ');
        std::string_view attr = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (attr.rfind("notify=", 0) == 0) {
            d.notify = smtp::parseNotify(attr.substr(7));
            if (d.notify == 0) return false;
        } else if (attr.rfind("orcpt=", 0) == 0) {
            std::string_view v = attr.substr(6);
            auto semi = v.find(';');
            if (semi == std::string_view::npos) return false;
            auto type = smtp::decodeXtext(v.substr(0, semi));
            auto addr = smtp::decodeXtext(v.substr(semi + 1));
            if (!type || !addr || type->empty()) return false;
            d.orcptType = *type;
            d.orcpt = *addr;
        }  // unknown attributes: ignored (a later writer may add some)
    }
    return true;
}

}  // namespace

namespace {
// "<n> <status> <code> <host> <diagnostic>": exactly five fields, the last two xtext (never
// a space inside), each possibly empty.
bool parseOwedReport(std::string_view value, std::size_t& index, OwedReport& o) {
    std::vector<std::string_view> f;
    for (int k = 0; k < 4; ++k) {
        auto s = value.find(' ');
        if (s == std::string_view::npos) return false;
        f.push_back(value.substr(0, s));
        value.remove_prefix(s + 1);
    }
    f.push_back(value);
    auto host = smtp::decodeXtext(f[3]);
    auto diagnostic = smtp::decodeXtext(f[4]);
    if (!parseNumber(f[0], index) || f[1].empty() || !parseNumber(f[2], o.replyCode) || !host || !diagnostic)
        return false;
    o.status = f[1];
    o.remoteHost = *host;
    o.diagnostic = *diagnostic;
    return true;
}
}  // namespace

std::optional<std::string> formatQueueEnvelope(const QueueEnvelope& e) {
    std::string out;
    bool ok = true;
    auto field = [&](std::string_view key, std::string_view value) {
        if (!isSafeValue(value)) ok = false;
        out.append(key).append(" ").append(value).append("\n");
    };
    field(Magic, std::to_string(QueueEnvelopeVersion));
    field("id", e.id);
    field("arrival", std::to_string(toUnix(e.arrival)));
    field("sender", e.sender);
    for (const auto& r : e.recipients) field("recipient", r);
    field("client", e.clientIp);
    field("helo", e.heloName);
    field("auth", e.authUser);
    field("session", e.sessionId);
    field("attempts", std::to_string(e.attempts));
    field("next-attempt", std::to_string(toUnix(e.nextAttempt)));
    field("last-error", e.lastError);
    if (e.hold) field("hold", "1");
    if (e.warned) field("warned", "1");
    if (e.dsn.ret != core::DsnRet::Unspecified) field("dsn-ret", smtp::formatRet(e.dsn.ret));
    if (!e.dsn.envid.empty()) field("dsn-envid", smtp::encodeXtext(e.dsn.envid));
    for (std::size_t i = 0; i < e.recipients.size(); ++i) {
        auto it = e.recipientDsn.find(e.recipients[i]);
        if (it != e.recipientDsn.end() && !it->second.empty())
            field("dsn-rcpt", std::to_string(i) + " " + formatRecipientDsn(it->second));
    }
    if (e.smtpUtf8) field("smtputf8", "1");
    if (e.requireTls) field("requiretls", "1");
    for (std::size_t i = 0; i < e.recipients.size(); ++i) {
        auto it = e.owedReports.find(e.recipients[i]);
        if (it == e.owedReports.end()) continue;
        const OwedReport& o = it->second;
        const bool statusOk = !o.status.empty() && std::all_of(o.status.begin(), o.status.end(), [](char c) {
            return (c >= '0' && c <= '9') || c == '.';
        });
        if (!statusOk || o.replyCode < 0 || o.replyCode > 999) ok = false;
        field("failed", std::to_string(i) + " " + o.status + " " + std::to_string(o.replyCode) + " " +
                            smtp::encodeXtext(o.remoteHost) + " " + smtp::encodeXtext(o.diagnostic));
    }
    if (!ok || e.id.empty() || e.recipients.empty()) return std::nullopt;
    return out;
}

std::optional<QueueEnvelope> parseQueueEnvelope(std::string_view text) {
    QueueEnvelope e;
    std::vector<std::pair<std::size_t, core::RecipientDsn>> rcptDsn;
    std::vector<std::pair<std::size_t, OwedReport>> owed;
    bool sawMagic = false, sawId = false, sawArrival = false, sawSender = false;
    bool first = true;
    while (!text.empty()) {
        auto nl = text.find('\n');
        // Every line, the last included, ends with LF: a missing one means a torn write.
        if (nl == std::string_view::npos) return std::nullopt;
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        auto sp = line.find(' ');
        std::string_view key = line.substr(0, sp);
        std::string_view value = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
        if (first) {
            int version = 0;
            if (key != Magic || !parseNumber(value, version) || version != QueueEnvelopeVersion) return std::nullopt;
            sawMagic = true;
            first = false;
            continue;
        }
        if (key == "id") {
            e.id = value;
            sawId = !value.empty();
        } else if (key == "arrival") {
            std::int64_t s = 0;
            if (!parseNumber(value, s)) return std::nullopt;
            e.arrival = fromUnix(s);
            sawArrival = true;
        } else if (key == "sender") {
            e.sender = value;
            sawSender = true;
        } else if (key == "recipient") {
            if (value.empty()) return std::nullopt;
            e.recipients.emplace_back(value);
        } else if (key == "client") {
            e.clientIp = value;
        } else if (key == "helo") {
            e.heloName = value;
        } else if (key == "auth") {
            e.authUser = value;
        } else if (key == "session") {
            e.sessionId = value;
        } else if (key == "attempts") {
            if (!parseNumber(value, e.attempts)) return std::nullopt;
        } else if (key == "next-attempt") {
            std::int64_t s = 0;
            if (!parseNumber(value, s)) return std::nullopt;
            e.nextAttempt = fromUnix(s);
        } else if (key == "last-error") {
            e.lastError = value;
        } else if (key == "hold") {
            e.hold = value == "1";
        } else if (key == "warned") {
            e.warned = value == "1";
        } else if (key == "dsn-ret") {
            e.dsn.ret = value == "FULL" ? core::DsnRet::Full
                      : value == "HDRS" ? core::DsnRet::Headers
                                        : core::DsnRet::Unspecified;
        } else if (key == "dsn-envid") {
            // A DSN request that cannot be read is dropped, never the message.
            if (auto envid = smtp::decodeXtext(value)) e.dsn.envid = *envid;
        } else if (key == "dsn-rcpt") {
            std::size_t index = 0;
            core::RecipientDsn d;
            if (parseRecipientDsn(value, index, d)) rcptDsn.emplace_back(index, std::move(d));
        } else if (key == "smtputf8") {
            e.smtpUtf8 = value == "1";
        } else if (key == "requiretls") {
            e.requireTls = value == "1";
        } else if (key == "failed") {
            // An owed report that cannot be read is dropped (the recipient is tried again),
            // never the message.
            std::size_t index = 0;
            OwedReport o;
            if (parseOwedReport(value, index, o)) owed.emplace_back(index, std::move(o));
        }
        // Unknown keywords: ignored, so a newer writer can add fields.
    }
    if (!sawMagic || !sawId || !sawArrival || !sawSender || e.recipients.empty()) return std::nullopt;
    for (auto& [index, d] : rcptDsn)
        if (index < e.recipients.size() && !d.empty()) e.recipientDsn[e.recipients[index]] = std::move(d);
    for (auto& [index, o] : owed)
        if (index < e.recipients.size()) e.owedReports[e.recipients[index]] = std::move(o);
    return e;
}

}  // namespace postern::queue
